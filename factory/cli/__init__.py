"""The `factory` command line, one module per concern:

- `main`: the parser, dispatch, and the mapping of errors to exit codes (0 ok, 1 failed work or violated
  rules, 2 bad input or usage);
- `options`: the parser class and the options commands share (`--matrix`, `--json`, index options, a
  selection of tags), and `Commands.add`, which gives every command its help and example;
- `output`: data on stdout, progress on stderr, tables and JSON;
- `inputs`: what commands read first (the matrix, the plan of a selection, current locks);
- the command families: `matrix` (plan, check, list, schema, labels, docs, bake), `images` (build, release,
  verify, smoke, inspect, diff), `locks` (lock), `upstream` (upstream check, outdated, propose);
- `plan_view`: `factory plan` as a tree, or in full with `--verbose`.

A new flag goes into its command's family module, or into `options` when several commands share it.
"""
