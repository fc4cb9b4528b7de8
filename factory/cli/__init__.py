"""The `factory` command: argument parsing, output (data on stdout, progress on stderr), exit codes."""
