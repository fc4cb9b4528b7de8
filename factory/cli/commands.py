"""Commands that reach an engine, a registry or an index; each imports its adapter only when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub, add, command, index_options) -> None:
    """Add the adapter-backed subcommands to the CLI parser and the command table."""
    from factory.cli import upstream as upstream_cli

    upstream_cli.register(sub, add, command, index_options)
    build = add("build", "build bases then vLLM images with Docker Buildx, skipping what is up to date")
    _selection(build)
    build.add_argument("--push", action="store_true", help="push every image once all are built and verified")
    build.add_argument("--platform", help="override the matrix's platform (default: [defaults] platform)")
    build.add_argument("--dry-run", action="store_true", help="print the exact docker commands, build nothing")
    build.add_argument("--no-verify", action="store_true", help="skip checking labels against image content")
    build.add_argument("--jobs", type=int, default=1, help="images built at once (default 1)")
    build.add_argument("--network", help="network for RUN steps, e.g. host (an index on this machine)")
    _run_flags(build, report=".factory/build-report.json")
    _smoke_flags(build)
    command("build")(cmd_build)

    lock = add("lock", "resolve each image's whole Python environment for its platform (uv) and write "
                       "locks/<image>.txt; only missing or stale locks are resolved")
    lock.add_argument("tags", nargs="*", metavar="TAG|GLOB",
                      help="tags, extra layers, base names or globs (default: every image; parents come along)")
    lock.add_argument("--check", action="store_true",
                      help="exit 1 when a lock is missing or stale against the matrix, its Dockerfile or the "
                           "requirement transform (offline: no resolving; CI runs it)")
    lock.add_argument("--refresh", action="store_true", help="resolve again even when current (keeps versions "
                                                            "where still allowed)")
    lock.add_argument("--upgrade", action="store_true", help="resolve again, preferring nothing from the current "
                                                            "locks (newest allowed versions)")
    lock.add_argument("--platform", default=None,
                      help="lock for another platform than the matrix's (what `build --platform` builds); those "
                           "locks live in <lock_dir>/<os>-<arch>/")
    lock.add_argument("--jobs", type=int, default=4, help="images resolved at once (default 4)")
    lock.add_argument("--offline", action="store_true", help="resolve from uv's and the factory's caches only "
                                                            "(after one online run); a package never seen fails")
    lock.add_argument("--json", action="store_true")
    command("lock")(cmd_lock)

    verify = add("verify", "check an image's labels against what is really installed in it (no run, no GPU)")
    verify.add_argument("image", metavar="IMAGE")
    verify.add_argument("--lock", type=Path, default=None,
                        help="compare the installed distributions with this lock (default: the lock of the matrix "
                             "image whose ref IMAGE is, when there is one)")
    verify.add_argument("--json", action="store_true")
    command("verify")(cmd_verify)


    labels = add("labels", "write or check labels/: the label contract, its JSON Schema, one golden file per tag")
    labels.add_argument("--write", action="store_true", help="regenerate the files")
    labels.add_argument("--check", action="store_true", help="exit 1 when labels/ is out of date (CI)")
    labels.add_argument("--dir", type=Path, default=None, help="folder (default: labels/ beside the matrix)")
    command("labels")(cmd_labels)

    docs = add("docs", "rewrite the generated image table in README.md from the matrix")
    docs.add_argument("--check", action="store_true", help="exit 1 when the README table is stale (CI)")
    docs.add_argument("--readme", type=Path, default=None, help="default: README.md beside the matrix")
    command("docs")(cmd_docs)


    release = add("release", "build, verify, then push a whole release; a failure anywhere publishes nothing new")
    _selection(release)
    release.add_argument("--dry-run", action="store_true", help="print the exact docker commands, do nothing")
    release.add_argument("--jobs", type=int, default=2, help="images built at once (default 2)")
    release.add_argument("--no-aliases", action="store_true", help="do not move `latest` and `<minor>-tN`")
    release.add_argument("--push-attempts", type=int, default=4, help="tries per push, with backoff (default 4)")
    _run_flags(release, report=".factory/release-report.json")
    _smoke_flags(release)
    command("release")(cmd_release)

    inspect = add("inspect", "show an image's component versions from its labels, locally or from a registry")
    inspect.add_argument("ref", metavar="REF", help="image reference, or a tag of the matrix (e.g. 0.15.0-t5)")
    inspect.add_argument("--platform", default=None, help="platform to read from an index (default: the matrix's)")
    inspect.add_argument("--remote", action="store_true", help="read the registry even if a local image exists")
    inspect.add_argument("--allow-http", action="store_true", help="plain HTTP to a non-loopback registry")
    inspect.add_argument("--sbom", action="store_true",
                         help="print the image's SBOM (CycloneDX JSON, attached by `release` as an OCI referrer) "
                              "from the registry")
    inspect.add_argument("--json", action="store_true")
    command("inspect")(cmd_inspect)

    diff = add("diff", "compare the component versions of two images (refs or matrix tags), and their locked "
                       "Python packages when both are matrix images")
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.add_argument("--planned", action="store_true", help="compare the labels the plan gives, no image needed")
    diff.add_argument("--platform", default=None)
    diff.add_argument("--remote", action="store_true")
    diff.add_argument("--allow-http", action="store_true")
    diff.add_argument("--json", action="store_true")
    command("diff")(cmd_diff)

    smoke = add("smoke", "run the GPU smoke program inside an image: numerics, arch, versions (needs a GPU host)")
    smoke.add_argument("image", metavar="IMAGE")
    smoke.add_argument("--gpus", default="all",
                       help="docker --gpus value (default: all; none: no GPU, only shows the program runs)")
    smoke.add_argument("--arch", default=None, help="expected GPU arch (default: the matrix's, sm_121)")
    smoke.add_argument("--nccl", action="store_true", help="also run a one-process NCCL all-reduce")
    smoke.add_argument("--platform", default=None, help="platform to run (default: the image's own)")
    _baseline_flags(smoke, "--baseline", "--no-builtin-baseline")
    smoke.add_argument("--json", action="store_true")
    command("smoke")(cmd_smoke)

    bake = add("bake", "write a Buildx bake file of the selected graph (bases as targets, images on them)")
    _selection(bake)
    bake.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: stdout)")
    bake.add_argument("--cache-from", action="append", default=[], metavar="SPEC")
    bake.add_argument("--cache-to", metavar="SPEC")
    bake.add_argument("--platform", action="append", default=[],
                      help="build for this platform instead of the matrix's (its locks: factory lock --platform)")
    command("bake")(cmd_bake)


def _run_flags(p: argparse.ArgumentParser, *, report: str) -> None:
    """What `build` and `release` share: the builder and its cache, publishing safety, logs and the report."""
    p.add_argument("--builder", help="the Buildx builder to use (e.g. a multi-node builder)")
    p.add_argument("--cache-from", action="append", default=[], metavar="SPEC",
                   help="Buildx cache source, e.g. type=registry,ref=HOST/REPO:cache (repeatable)")
    p.add_argument("--cache-to", metavar="SPEC", help="Buildx cache export, e.g. type=inline")
    p.add_argument("--force", action="store_true", help="allow overwriting a published tag with other content")
    p.add_argument("--allow-http", action="store_true", help="plain HTTP to a non-loopback registry")
    p.add_argument("--log-dir", type=Path, default=Path(".factory/logs"))
    p.add_argument("--report", type=Path, default=Path(report))
    p.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    p.add_argument("--build-ca", type=Path, default=None, metavar="FILE",
                   help="a CA certificate (PEM) the build's downloads must trust, e.g. a TLS-inspecting proxy's; "
                        "passed as a BuildKit secret, never stored in an image (default: $FACTORY_BUILD_CA)")


def _smoke_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smoke", action="store_true",
                   help="run the GPU smoke test in every vLLM image before pushing; a failure pushes nothing")
    p.add_argument("--smoke-gpus", default="all", metavar="GPUS", help="docker --gpus for --smoke (default: all)")
    p.add_argument("--smoke-arch", default=None, metavar="ARCH",
                   help="GPU arch the smoke test expects (default: the matrix's, sm_121)")
    p.add_argument("--smoke-nccl", action="store_true", help="--smoke also runs a one-process NCCL all-reduce")
    _baseline_flags(p, "--smoke-baseline", "--smoke-no-builtin-baseline")


def _baseline_flags(p: argparse.ArgumentParser, baseline: str, no_builtin: str) -> None:
    p.add_argument(baseline, type=Path, default=None, metavar="REPORT",
                   help="a smoke report of a known-good run: a backend case it ran that is now unavailable fails")
    p.add_argument(no_builtin, action="store_false", dest=no_builtin.lstrip("-").replace("-", "_"),
                   help="do not apply the built-in per-arch expectation of available SDPA backends")


def _smoke_options(args, loaded):
    from factory.usecases.build import SmokeOptions

    if not args.smoke:
        return None
    return SmokeOptions(gpus=args.smoke_gpus, arch=args.smoke_arch or loaded.matrix.defaults.build.cuda_arch,
                        nccl=args.smoke_nccl, baseline=args.smoke_baseline,
                        builtin_baseline=args.smoke_no_builtin_baseline)


def _build_ca(args) -> Path | None:
    """The --build-ca file (or $FACTORY_BUILD_CA), checked to be a readable PEM certificate."""
    import os

    from factory.core.errors import InputError

    path = args.build_ca or (Path(os.environ["FACTORY_BUILD_CA"]) if os.environ.get("FACTORY_BUILD_CA") else None)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as error:
        raise InputError(f"--build-ca {path}: cannot read it ({error.strerror or error})") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise InputError(f"--build-ca {path}: not a PEM certificate (no BEGIN CERTIFICATE line)")
    return path.resolve()


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("tags", nargs="*", metavar="TAG|GLOB", help="tags, base names or globs")
    p.add_argument("--all", action="store_true", help="every tag")


def _for_platform(loaded, platform: str | None):
    """The matrix planned for another platform than its own (`--platform`): the override is planned like the
    matrix's own platform, so it is part of every input digest (an image built for one platform never counts
    as up to date for another), and its locks live in `<lock_dir>/<os>-<arch>/` beside the platform's own."""
    if not platform or platform == loaded.matrix.defaults.platform:
        return loaded
    from factory.core.matrix import LoadedMatrix

    matrix = loaded.matrix
    lock_dir = f"{matrix.defaults.lock_dir}/{platform.replace('/', '-')}"
    defaults = matrix.defaults.model_copy(update={"platform": platform, "lock_dir": lock_dir})
    return LoadedMatrix(matrix.model_copy(update={"defaults": defaults}), loaded.path)


def _plan_for(args):
    from factory.core.errors import InputError
    from factory.core.matrix import load
    from factory.core.plan import build_plan, select
    from factory.core.resolve import resolve

    if not args.tags and not args.all:
        raise InputError("name the tags to build (TAG, GLOB ...) or pass --all")
    loaded = _for_platform(load(args.matrix), getattr(args, "platform", None))
    resolution = resolve(loaded)
    if resolution.blocking:
        first = resolution.blocking[0]
        raise InputError(f"{loaded.path}: {len(resolution.blocking)} unwaived rule violation(s), first: "
                         f"{first.subject} [{first.rule}] found {first.found}, required {first.required}"
                         " (run `factory check`)")
    return loaded, build_plan(resolution, select(loaded.matrix, args.tags, args.all))


def _lock_plan(args):
    from factory.core.matrix import load
    from factory.core.plan import build_plan, select
    from factory.core.resolve import resolve

    loaded = _for_platform(load(args.matrix), args.platform)
    resolution = resolve(loaded)
    names = select(loaded.matrix, args.tags, not args.tags)
    images = loaded.matrix.image
    # -t4/-t5 siblings share their layers, so they are locked together
    names += [t for t in images for n in list(names) if n in images and t not in names
              and (images[t].vllm, images[t].base) == (images[n].vllm, images[n].base)]
    return loaded, build_plan(resolution, list(dict.fromkeys(names))), list(dict.fromkeys(names))


def cmd_lock(args) -> int:
    from factory.cli.output import to_json
    from factory.core.errors import InputError
    from factory.usecases import locking

    if args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    loaded, plan, names = _lock_plan(args)
    if args.check:
        problems = locking.stale(loaded, plan)
        if args.json:
            print(to_json({"stale": problems}))
        for name, why in problems.items():
            print(f"lock: {name}: {why}")
        if problems:
            print(f"lock: {len(problems)} lock(s) to refresh: factory lock {' '.join(problems)}"
                  f"{_platform_flag(args.platform)}")
            return 1
        if not args.json:
            print(f"lock: {sum(1 for s in plan.images if s.lock)} lock(s) current")
        return 0
    import sys

    result = locking.lock(loaded, plan, names=names if args.tags else None, refresh=args.refresh,
                          upgrade=args.upgrade, jobs=args.jobs, offline=args.offline,
                          progress=lambda text: print(text, file=sys.stderr))
    if args.json:
        print(to_json({"written": result.written, "current": result.current, "failed": result.failed}))
    else:
        for name in result.written:
            print(f"lock: {name}: written")
        if result.current:
            print(f"lock: {len(result.current)} lock(s) already current")
        for name, why in result.failed.items():
            print(f"lock: {name}: FAILED: {why}")
    return 1 if result.failed else 0


def _require_current_locks(loaded, plan, platform: str | None = None) -> None:
    """A build installs exactly its lock: a missing or stale one is bad input, named, before anything runs."""
    from factory.core.errors import InputError
    from factory.usecases import locking

    problems = locking.stale(loaded, plan)
    if problems:
        first = next(iter(problems.items()))
        raise InputError(f"{len(problems)} lock(s) not current, first: {first[0]}: {first[1]}; run `factory lock "
                         f"{' '.join(problems)}{_platform_flag(platform)}`")


def _platform_flag(platform: str | None) -> str:
    return f" --platform {platform}" if platform else ""


def cmd_build(args) -> int:
    from factory.cli.output import to_json
    from factory.core.errors import InputError
    from factory.usecases.build import BuildOptions, run_build

    if args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    loaded, plan = _plan_for(args)
    if not args.dry_run:
        _require_current_locks(loaded, plan, args.platform)
    options = BuildOptions(push=args.push, platform=args.platform, builder=args.builder,
                           cache_from=tuple(args.cache_from), cache_to=args.cache_to, dry_run=args.dry_run,
                           verify=not args.no_verify, force=args.force, log_dir=args.log_dir,
                           report=args.report, allow_http=args.allow_http, jobs=args.jobs,
                           network=args.network, smoke=_smoke_options(args, loaded),
                           build_ca=_build_ca(args))
    report = run_build(plan, loaded.root, options)
    if args.json:
        print(to_json(report.as_dict()))
    return 0 if report.ok else 1


def cmd_release(args) -> int:
    from factory.cli.output import table, to_json
    from factory.core.errors import InputError
    from factory.core.plan import aliases
    from factory.usecases.build import BuildOptions, run_build

    if args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    loaded, plan = _plan_for(args)
    if not args.dry_run:
        _require_current_locks(loaded, plan)
    moving = {} if args.no_aliases else aliases(loaded.matrix, plan)
    options = BuildOptions(push=True, builder=args.builder, cache_from=tuple(args.cache_from),
                           cache_to=args.cache_to, dry_run=args.dry_run, force=args.force, log_dir=args.log_dir,
                           report=args.report, allow_http=args.allow_http, jobs=args.jobs, aliases=moving,
                           push_attempts=max(1, args.push_attempts), smoke=_smoke_options(args, loaded),
                           build_ca=_build_ca(args))
    report = run_build(plan, loaded.root, options)
    if args.dry_run:
        for alias, source in moving.items():
            print(f"registry: tag {alias} as the manifest of {source} (PUT, nothing pulled or pushed)")
        return 0
    smoke = {True: "passed", False: "FAILED", None: "-"}
    rows = [(r.name, r.status, smoke[r.smoked], ", ".join(r.pushed) or "-", (r.digest or "")[:19])
            for r in report.images]
    print(table(["image", "status", "smoke", "pushed", "digest"], rows))
    if report.aliases:
        print("aliases: " + ", ".join(f"{a} -> {s.rsplit(':', 1)[-1]}" for a, s in report.aliases.items()))
    print("release complete" if report.ok else "release NOT complete: rerun to finish (nothing is rebuilt)")
    if args.json:
        print(to_json(report.as_dict()))
    return 0 if report.ok else 1


def cmd_verify(args) -> int:
    from factory.cli.output import table, to_json
    from factory.core import lockfile
    from factory.core.matrix import load
    from factory.usecases.verify import measure_local

    loaded = load(args.matrix) if Path(args.matrix).exists() else None
    namespace = loaded.matrix.defaults.label_namespace if loaded else "dev.scitrera"
    lock_file = args.lock or _lock_of(args.image, loaded)
    lock = lockfile.read(lock_file) if lock_file else None
    result = measure_local(args.image, None, namespace, lock=lock)
    if args.json:
        print(to_json(result.as_dict()))
        return 0 if result.ok else 1
    found = result.findings.get("components", {})
    where = result.findings.get("locations", {})
    rows = [(c, v, where.get(c, "")) for c, v in found.items()]
    rows += [(key.removeprefix(namespace + "."), value, "measured") for key, value in result.measured.items()]
    from factory.adapters.rootfs.content import Findings, pip_cuda_report

    pip = Findings(cuda_dists=dict(result.findings.get("cuda_dists", {})))
    rows += [(name, version, f"pip, {verdict}") for name, version, verdict in pip_cuda_report(pip, found.get("cuda"))]
    print(f"{args.image} ({result.kind}): what its files say")
    print(table(["component", "found", "where"], rows))
    if result.mismatches:
        print(f"{args.image}: {len(result.mismatches)} label(s) do not match the image content")
        for m in result.mismatches:
            print(f"  {m.message}")
    else:
        print(f"{args.image}: every label matches the image content")
    return 0 if result.ok else 1


def _lock_of(ref: str, loaded) -> Path | None:
    """The lock of the matrix image `ref` names (a tag, a base name or one of their refs), if it has one."""
    if loaded is None:
        return None
    from factory.core.plan import build_plan
    from factory.core.resolve import resolve

    plan = build_plan(resolve(loaded))
    for spec in plan.images:
        if ref == spec.name or ref in spec.refs:
            if spec.env_lock is None:
                return None
            path = loaded.root / spec.env_lock  # a runtime image's environment is its dev base's
            return path if path.exists() else None
    return None


def cmd_labels(args) -> int:
    from factory.core.exports.golden import label_files, sync
    from factory.core.matrix import load
    from factory.core.plan import build_plan
    from factory.core.resolve import resolve

    loaded = load(args.matrix)
    folder = args.dir or loaded.root / "labels"
    problems = sync(folder, label_files(build_plan(resolve(loaded))), write=args.write)
    if args.write:
        print(f"{folder}: {len(problems)} file(s) updated" if problems else f"{folder}: already up to date")
        return 0
    for problem in problems:
        print(problem)
    if problems:
        print("labels/ is out of date with matrix.toml: run `factory labels --write` and review the diff")
        return 1
    print(f"{folder}: up to date with {loaded.path.name}")
    return 0


def cmd_docs(args) -> int:
    from factory.core.exports.golden import image_table, render_readme
    from factory.core.matrix import load
    from factory.core.resolve import resolve

    loaded = load(args.matrix)
    readme = args.readme or loaded.root / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = render_readme(text, image_table(resolve(loaded)), readme)
    if args.check:
        if new != text:
            print(f"{readme}: the image table is stale; run `factory docs`")
            return 1
        print(f"{readme}: the image table is up to date")
        return 0
    readme.write_text(new, encoding="utf-8")
    print(f"{readme}: image table {'rewritten' if new != text else 'already up to date'}")
    return 0


def cmd_bake(args) -> int:
    from datetime import UTC, datetime

    from factory.cli.output import to_json
    from factory.core.errors import InputError
    from factory.core.exports.bake import bake_file
    from factory.usecases.build import BuildOptions, git_revision, lock_context

    if not args.tags:
        args.all = True
    platforms = list(dict.fromkeys(args.platform))
    if len(platforms) > 1:
        raise InputError(f"--platform {' --platform '.join(platforms)}: every image installs its platform's own "
                         "lock, so a bake file is for one platform; write one per platform")
    planned = argparse.Namespace(**{**vars(args), "platform": platforms[0] if platforms else None})
    loaded, plan = _plan_for(planned)
    if args.output:
        _check_output(args.output)
    _require_current_locks(loaded, plan, planned.platform)
    options = BuildOptions()
    lock_dirs = {spec.name: lock_context(spec, loaded.root, options) for spec in plan.images if spec.lock}
    data = bake_file(plan, loaded.root, created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     revision=git_revision(loaded.root), cache_from=tuple(args.cache_from), cache_to=args.cache_to,
                     platforms=tuple(platforms) or None,
                     lock_dirs={k: v.resolve() for k, v in lock_dirs.items() if v is not None})
    text = to_json(data) + "\n"
    if args.output:
        _write_output(args.output, text)
        print(f"{args.output}: {len(data['target'])} target(s); run `docker buildx bake -f {args.output} --load`")
    else:
        print(text, end="")
    return 0


def _check_output(path: Path) -> None:
    """`bake -o`: a file in an existing folder, never onto a folder; one clear message otherwise."""
    from factory.core.errors import InputError

    if path.is_dir():
        raise InputError(f"-o {path}: is a folder; name the file to write (e.g. {path / 'docker-bake.json'})")
    if not path.parent.is_dir():
        raise InputError(f"-o {path}: the folder {path.parent} does not exist")


def _write_output(path: Path, text: str) -> None:
    from factory.core.errors import InputError

    _check_output(path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"-o {path}: cannot write it ({exc.strerror or exc})") from None


def cmd_smoke(args) -> int:
    from factory.adapters import docker
    from factory.cli.output import to_json
    from factory.core.errors import InputError
    from factory.core.matrix import load
    from factory.usecases.smoke import expect_from_labels, render_table, smoke_image

    matrix = load(args.matrix).matrix if Path(args.matrix).exists() else None
    namespace = matrix.defaults.label_namespace if matrix else "dev.scitrera"
    arch = args.arch or (matrix.defaults.build.cuda_arch if matrix else "sm_121")
    labels = docker.local_labels(args.image)
    if labels is None:
        raise InputError(f"no local image {args.image} (build or pull it first)")
    report = smoke_image(args.image, gpus=args.gpus, arch=arch, expect=expect_from_labels(labels, namespace),
                         nccl=args.nccl, baseline=args.baseline, builtin_baseline=args.no_builtin_baseline,
                         platform=args.platform or docker.local_platform(args.image))
    print(to_json(report.raw) if args.json else render_table(report))
    return 0 if report.ok else 1


def _matrix_or_none(path):
    from factory.core.matrix import load

    return load(path) if Path(path).exists() else None


def _image_labels(name: str, loaded, *, platform: str | None, remote: bool, allow_http: bool,
                  planned: bool = False) -> tuple[str, str, dict[str, str]]:
    """(ref, where, labels) of a ref or a matrix tag: local engine first, then the registry."""
    matrix = loaded.matrix if loaded else None
    ref = name
    if matrix and (name in matrix.image or name in matrix.base):
        from factory.core.plan import build_plan
        from factory.core.resolve import resolve

        spec = build_plan(resolve(loaded), [name]).get(name)
        ref = spec.ref
        if planned:
            return ref, "plan", dict(spec.labels)
    platform = platform or (matrix.defaults.platform if matrix else "linux/arm64")
    if not remote:
        from factory.adapters import docker

        try:
            labels = docker.local_labels(ref)
        except docker.EngineError:
            labels = None
        except Exception:  # no engine at all: read the registry instead
            labels = None
        if labels is not None:
            return ref, "local engine", labels
    from factory.adapters.registry import RegistryClient

    with RegistryClient(allow_http=allow_http) as client:
        return ref, f"registry ({platform})", client.labels(ref, platform)


def _components_table(labels: dict[str, str], namespace: str) -> list[tuple[str, str]]:
    from factory.core import labels as L
    from factory.core.components import COMPONENTS, EXTRA_COMPONENTS

    rows = [(c, labels[L.component_key(namespace, c)]) for c in COMPONENTS + EXTRA_COMPONENTS
            if L.component_key(namespace, c) in labels]
    for key in ("build_mode", "cuda_arch", "os", "cuda_sass", "cuda_ptx", "extra", "revision", "input_digest"):
        if L.factory_key(namespace, key) in labels:
            rows.append((key, labels[L.factory_key(namespace, key)]))
    for key in ("version", "created", "revision", "base.name", "base.digest", "source"):
        if L.oci_key(key) in labels:
            rows.append((f"oci {key}", labels[L.oci_key(key)]))
    return rows


def cmd_inspect(args) -> int:
    from factory.cli.output import table, to_json

    loaded = _matrix_or_none(args.matrix)
    namespace = loaded.matrix.defaults.label_namespace if loaded else "dev.scitrera"
    if args.sbom:
        print(_sbom_of(args.ref, loaded, allow_http=args.allow_http), end="")
        return 0
    ref, where, labels = _image_labels(args.ref, loaded, platform=args.platform, remote=args.remote,
                                       allow_http=args.allow_http)
    rows = _components_table(labels, namespace)
    if args.json:
        print(to_json({"ref": ref, "source": where, "components": dict(rows), "labels": labels}))
        return 0
    print(f"{ref}  (from the {where})")
    print(table(["component", "version"], rows))
    return 0


def _sbom_of(name: str, loaded, *, allow_http: bool) -> str:
    """The newest SBOM attached to a published image (a ref or a matrix image), as JSON text."""
    import json

    from factory.adapters.registry import RegistryClient
    from factory.core.errors import WorkFailed
    from factory.core.exports import sbom

    ref = name
    if loaded is not None:
        from factory.core.plan import build_plan
        from factory.core.resolve import resolve

        for spec in build_plan(resolve(loaded)).images:
            if name == spec.name:
                ref = spec.ref
    with RegistryClient(allow_http=allow_http) as client:
        subject = client.descriptor(ref)
        found = client.referrers(ref, subject["digest"], sbom.MEDIA_TYPE)
        if not found:
            raise WorkFailed(f"{ref}: no SBOM is attached to {subject['digest'][:19]} (published by `factory "
                             "release`, which attaches one)")
        newest = max(found, key=lambda d: d.get("annotations", {}).get("org.opencontainers.image.created", ""))
        data = client.fetch_artifact(ref, newest["digest"])
    return json.dumps(json.loads(data), indent=2, sort_keys=True) + "\n"


def cmd_diff(args) -> int:
    from factory.cli.output import table, to_json

    loaded = _matrix_or_none(args.matrix)
    namespace = loaded.matrix.defaults.label_namespace if loaded else "dev.scitrera"
    sides = [_image_labels(n, loaded, platform=args.platform, remote=args.remote, allow_http=args.allow_http,
                           planned=args.planned) for n in (args.a, args.b)]
    a, b = (dict(_components_table(labels, namespace)) for _, _, labels in sides)
    keys = [k for k in dict.fromkeys([*a, *b]) if not k.startswith("oci created") and k != "input_digest"]
    changed = [(k, a.get(k, "-"), b.get(k, "-")) for k in keys if a.get(k) != b.get(k)]
    packages = _lock_changes(args.a, args.b, loaded)
    if args.json:
        out = {"a": sides[0][0], "b": sides[1][0],
               "differences": [{"component": k, "a": x, "b": y} for k, x, y in changed]}
        if packages is not None:
            out["packages"] = [{"name": c.name, "a": c.old, "b": c.new} for c in packages]
        print(to_json(out))
        return 0
    if not changed:
        print(f"{sides[0][0]} and {sides[1][0]}: same component versions")
    else:
        print(table(["component", args.a, args.b], changed))
    if packages is not None:
        print(f"\nPython packages (locks): {len(packages)} difference(s)" + (":" if packages else ""))
        if packages:
            print(table(["package", args.a, args.b], [(c.name, c.old or "-", c.new or "-") for c in packages]))
    return 0


def _lock_changes(a: str, b: str, loaded):
    """The lock difference of two matrix images (versions added, removed, changed), None without both locks."""
    from factory.core import lockfile

    paths = [_lock_of(name, loaded) for name in (a, b)]
    if None in paths:
        return None
    return lockfile.diff(lockfile.read(paths[0]), lockfile.read(paths[1]))
