"""The image commands: build, release, verify, smoke, inspect, diff. Each imports its engine or registry
adapter only when it runs. Build and release write progress on stderr; stdout carries their result (the
docker commands of a `--dry-run`, release's table, or the report with `--json`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from factory.cli.options import Commands, add_json, add_registry_options, add_selection

if TYPE_CHECKING:
    from factory.cli.output import Printer
    from factory.core.lockfile import Change
    from factory.core.matrix import LoadedMatrix
    from factory.usecases.build import BuildReport, SmokeOptions

DEFAULT_NAMESPACE = "dev.scitrera"


def register(commands: Commands) -> None:
    build = commands.add("build", "build bases then vLLM images with Docker Buildx, skipping what is up to date",
                         ("factory build 0.17.0-t5", "factory build --all --push --jobs 2",
                          "factory build 0.33.0-t5 --dry-run"), cmd_build)
    add_selection(build)
    build.add_argument("--push", action="store_true", help="push every image once all are built and verified")
    build.add_argument("--platform", help="override the matrix's platform (default: [defaults] platform)")
    build.add_argument("--dry-run", action="store_true", help="print the exact docker commands, build nothing")
    build.add_argument("--no-verify", action="store_true", help="skip checking labels against image content")
    build.add_argument("--jobs", type=int, default=1, help="images built at once (default 1)")
    build.add_argument("--network", help="network for RUN steps, e.g. host (an index on this machine)")
    _run_flags(build, report=".factory/build-report.json")
    _smoke_flags(build)

    release = commands.add("release", "build, verify, then push a whole release; a failure anywhere publishes "
                                      "nothing new", ("factory release '0.17.*' --smoke",
                                                      "factory release 0.33.0-t5 --dry-run"), cmd_release)
    add_selection(release)
    release.add_argument("--dry-run", action="store_true", help="print the exact docker commands, do nothing")
    release.add_argument("--jobs", type=int, default=2, help="images built at once (default 2)")
    release.add_argument("--no-aliases", action="store_true", help="do not move `latest` and `<minor>-tN`")
    release.add_argument("--push-attempts", type=int, default=4, help="tries per push, with backoff (default 4)")
    _run_flags(release, report=".factory/release-report.json")
    _smoke_flags(release)

    verify = commands.add("verify", "check an image's labels against what is really installed in it (no run, "
                                    "no GPU)", ("factory verify scitrera/dgx-spark-vllm:0.17.0-t5",
                                                "factory verify my/image:1 --lock locks/0.17.0-t5.txt --json"),
                          cmd_verify)
    verify.add_argument("image", metavar="IMAGE")
    verify.add_argument("--lock", type=Path, default=None,
                        help="compare the installed distributions with this lock (default: the lock of the matrix "
                             "image whose ref IMAGE is, when there is one)")
    add_json(verify)

    smoke = commands.add("smoke", "run the GPU smoke program inside an image: numerics, arch, versions (needs a "
                                  "GPU host)", ("factory smoke scitrera/dgx-spark-vllm:0.17.0-t5",
                                                "factory smoke my/image:1 --gpus none --json"), cmd_smoke)
    smoke.add_argument("image", metavar="IMAGE")
    smoke.add_argument("--gpus", default="all",
                       help="docker --gpus value (default: all; none: no GPU, only shows the program runs)")
    smoke.add_argument("--arch", default=None, help="expected GPU arch (default: the matrix's, sm_121)")
    smoke.add_argument("--nccl", action="store_true", help="also run a one-process NCCL all-reduce")
    smoke.add_argument("--platform", default=None, help="platform to run (default: the image's own)")
    _baseline_flags(smoke, "--baseline", "--no-builtin-baseline")
    add_json(smoke)

    inspect = commands.add("inspect", "show an image's component versions from its labels, locally or from a "
                                      "registry", ("factory inspect 0.17.0-t5",
                                                   "factory inspect scitrera/dgx-spark-vllm:0.17.0-t5 --remote --json",
                                                   "factory inspect 0.17.0-t5 --sbom"), cmd_inspect)
    inspect.add_argument("ref", metavar="REF", help="image reference, or a tag of the matrix (e.g. 0.15.0-t5)")
    add_registry_options(inspect)
    inspect.add_argument("--sbom", action="store_true",
                         help="print the image's SBOM (CycloneDX JSON, attached by `release` as an OCI referrer) "
                              "from the registry")
    add_json(inspect, "machine-readable output (--sbom prints JSON either way)")

    diff = commands.add("diff", "compare the component versions of two images (refs or matrix tags), and their "
                                "locked Python packages when both are matrix images; exit 1 when they differ",
                        ("factory diff 0.17.0-t4 0.17.0-t5 --planned",
                         "factory diff 0.16.0-t5 0.17.0-t5 --exit-zero --json"), cmd_diff)
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.add_argument("--planned", action="store_true", help="compare the labels the plan gives, no image needed")
    add_registry_options(diff)
    diff.add_argument("--exit-zero", action="store_true",
                      help="exit 0 even when the images differ (default: 1, like `git diff --exit-code`)")
    add_json(diff)


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
    add_json(p, "the report as JSON on stdout (every progress line and docker command on stderr)")
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


# -- build, release --------------------------------------------------------------------------------------------


def _smoke_options(args: argparse.Namespace, loaded: LoadedMatrix) -> SmokeOptions | None:
    from factory.usecases.build import SmokeOptions

    if not args.smoke:
        return None
    return SmokeOptions(gpus=args.smoke_gpus, arch=args.smoke_arch or loaded.matrix.defaults.build.cuda_arch,
                        nccl=args.smoke_nccl, baseline=args.smoke_baseline,
                        builtin_baseline=args.smoke_no_builtin_baseline)


def _build_ca(args: argparse.Namespace) -> Path | None:
    """The --build-ca file (or $FACTORY_BUILD_CA), checked to be a readable PEM certificate."""
    import os

    from factory.core.errors import InputError

    path: Path | None = args.build_ca or (Path(os.environ["FACTORY_BUILD_CA"])
                                          if os.environ.get("FACTORY_BUILD_CA") else None)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as error:
        raise InputError(f"--build-ca {path}: cannot read it ({error.strerror or error})") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise InputError(f"--build-ca {path}: not a PEM certificate (no BEGIN CERTIFICATE line)")
    return path.resolve()


def _run_output(args: argparse.Namespace) -> Printer:
    """Where run_build's lines go: a dry run's docker commands are its result (stdout) unless `--json` asks for
    the report there; a real run's lines are progress (stderr)."""
    from factory.cli.output import emit, progress

    return emit if args.dry_run and not args.json else progress


def cmd_build(args: argparse.Namespace) -> int:
    from factory.cli.inputs import plan_for, require_current_locks
    from factory.cli.options import check_jobs
    from factory.cli.output import emit, to_json
    from factory.usecases.build import BuildOptions, run_build

    check_jobs(args.jobs)
    loaded, plan = plan_for(args)
    if not args.dry_run:
        require_current_locks(loaded, plan, args.platform)
    options = BuildOptions(push=args.push, platform=args.platform, builder=args.builder,
                           cache_from=tuple(args.cache_from), cache_to=args.cache_to, dry_run=args.dry_run,
                           verify=not args.no_verify, force=args.force, log_dir=args.log_dir,
                           report=args.report, allow_http=args.allow_http, jobs=args.jobs,
                           network=args.network, smoke=_smoke_options(args, loaded),
                           build_ca=_build_ca(args))
    report = run_build(plan, loaded.root, options, out=_run_output(args))
    if args.json:
        emit(to_json(report.as_dict()))
    return 0 if report.ok else 1


def cmd_release(args: argparse.Namespace) -> int:
    from factory.cli.inputs import plan_for, require_current_locks
    from factory.cli.options import check_jobs
    from factory.cli.output import emit, to_json
    from factory.core.plan import aliases
    from factory.usecases.build import BuildOptions, run_build

    check_jobs(args.jobs)
    loaded, plan = plan_for(args)
    if not args.dry_run:
        require_current_locks(loaded, plan)
    moving = {} if args.no_aliases else aliases(loaded.matrix, plan)
    options = BuildOptions(push=True, builder=args.builder, cache_from=tuple(args.cache_from),
                           cache_to=args.cache_to, dry_run=args.dry_run, force=args.force, log_dir=args.log_dir,
                           report=args.report, allow_http=args.allow_http, jobs=args.jobs, aliases=moving,
                           push_attempts=max(1, args.push_attempts), smoke=_smoke_options(args, loaded),
                           build_ca=_build_ca(args))
    out = _run_output(args)
    report = run_build(plan, loaded.root, options, out=out)
    if args.dry_run:
        for alias, source in moving.items():
            out(f"registry: tag {alias} as the manifest of {source} (PUT, nothing pulled or pushed)")
    if args.json:
        emit(to_json(report.as_dict()))
    elif not args.dry_run:
        emit(_release_text(report))
    return 0 if report.ok else 1


def _release_text(report: BuildReport) -> str:
    from factory.cli.output import table

    smoke = {True: "passed", False: "FAILED", None: "-"}
    rows = [(r.name, r.status, smoke[r.smoked], ", ".join(r.pushed) or "-", (r.digest or "")[:19])
            for r in report.images]
    lines = [table(["image", "status", "smoke", "pushed", "digest"], rows)]
    if report.aliases:
        lines.append("aliases: " + ", ".join(f"{a} -> {s.rsplit(':', 1)[-1]}" for a, s in report.aliases.items()))
    lines.append("release complete" if report.ok else "release NOT complete: rerun to finish (nothing is rebuilt)")
    return "\n".join(lines)


# -- verify, smoke ---------------------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    from factory.cli.inputs import lock_of, matrix_or_none
    from factory.cli.output import emit, table, to_json
    from factory.core import lockfile
    from factory.core.findings import Findings
    from factory.core.image_checks import pip_cuda_report
    from factory.usecases.verify import measure_local

    loaded = matrix_or_none(args.matrix)
    namespace = loaded.matrix.defaults.label_namespace if loaded else DEFAULT_NAMESPACE
    lock_file = args.lock or lock_of(args.image, loaded)
    lock = lockfile.read(lock_file) if lock_file else None
    result = measure_local(args.image, None, namespace, lock=lock)
    if args.json:
        emit(to_json(result.as_dict()))
        return 0 if result.ok else 1
    found = result.findings.get("components", {})
    where = result.findings.get("locations", {})
    rows = [(c, v, where.get(c, "")) for c, v in found.items()]
    rows += [(key.removeprefix(namespace + "."), value, "measured") for key, value in result.measured.items()]
    pip = Findings(cuda_dists=dict(result.findings.get("cuda_dists", {})))
    rows += [(name, version, f"pip, {verdict}") for name, version, verdict in pip_cuda_report(pip, found.get("cuda"))]
    emit(f"{args.image} ({result.kind}): what its files say")
    emit(table(["component", "found", "where"], rows))
    if result.mismatches:
        emit(f"{args.image}: {len(result.mismatches)} label(s) do not match the image content")
        for m in result.mismatches:
            emit(f"  {m.message}")
    else:
        emit(f"{args.image}: every label matches the image content")
    return 0 if result.ok else 1


def cmd_smoke(args: argparse.Namespace) -> int:
    from factory.adapters import docker
    from factory.cli.inputs import matrix_or_none
    from factory.cli.output import emit, to_json
    from factory.core.errors import InputError
    from factory.usecases.smoke import expect_from_labels, render_table, smoke_image

    loaded = matrix_or_none(args.matrix)
    matrix = loaded.matrix if loaded else None
    namespace = matrix.defaults.label_namespace if matrix else DEFAULT_NAMESPACE
    arch = args.arch or (matrix.defaults.build.cuda_arch if matrix else "sm_121")
    labels = docker.local_labels(args.image)
    if labels is None:
        raise InputError(f"no local image {args.image} (build or pull it first)")
    report = smoke_image(args.image, gpus=args.gpus, arch=arch, expect=expect_from_labels(labels, namespace),
                         nccl=args.nccl, baseline=args.baseline, builtin_baseline=args.no_builtin_baseline,
                         platform=args.platform or docker.local_platform(args.image))
    emit(to_json(report.raw) if args.json else render_table(report))
    return 0 if report.ok else 1


# -- inspect, diff ---------------------------------------------------------------------------------------------


def _image_labels(name: str, loaded: LoadedMatrix | None, *, platform: str | None, remote: bool,
                  allow_http: bool, planned: bool = False) -> tuple[str, str, dict[str, str]]:
    """(ref, where, labels) of a ref or a matrix tag: local engine first, then the registry."""
    matrix = loaded.matrix if loaded else None
    ref = name
    if loaded is not None and matrix is not None and (name in matrix.image or name in matrix.base):
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


def cmd_inspect(args: argparse.Namespace) -> int:
    from factory.cli.inputs import matrix_or_none
    from factory.cli.output import emit, table, to_json

    loaded = matrix_or_none(args.matrix)
    namespace = loaded.matrix.defaults.label_namespace if loaded else DEFAULT_NAMESPACE
    if args.sbom:
        print(_sbom_of(args.ref, loaded, allow_http=args.allow_http), end="")
        return 0
    ref, where, labels = _image_labels(args.ref, loaded, platform=args.platform, remote=args.remote,
                                       allow_http=args.allow_http)
    rows = _components_table(labels, namespace)
    if args.json:
        emit(to_json({"ref": ref, "source": where, "components": dict(rows), "labels": labels}))
        return 0
    emit(f"{ref}  (from the {where})")
    emit(table(["component", "version"], rows))
    return 0


def _sbom_of(name: str, loaded: LoadedMatrix | None, *, allow_http: bool) -> str:
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


def cmd_diff(args: argparse.Namespace) -> int:
    """Exit 1 when the images differ (components or locked packages), like `git diff --exit-code`."""
    from factory.cli.inputs import matrix_or_none
    from factory.cli.output import emit, table, to_json

    loaded = matrix_or_none(args.matrix)
    namespace = loaded.matrix.defaults.label_namespace if loaded else DEFAULT_NAMESPACE
    sides = [_image_labels(n, loaded, platform=args.platform, remote=args.remote, allow_http=args.allow_http,
                           planned=args.planned) for n in (args.a, args.b)]
    a, b = (dict(_components_table(labels, namespace)) for _, _, labels in sides)
    keys = [k for k in dict.fromkeys([*a, *b]) if not k.startswith("oci created") and k != "input_digest"]
    changed = [(k, a.get(k, "-"), b.get(k, "-")) for k in keys if a.get(k) != b.get(k)]
    packages = _lock_changes(args.a, args.b, loaded)
    differ = bool(changed or packages)
    if args.json:
        out: dict[str, object] = {"a": sides[0][0], "b": sides[1][0], "same": not differ,
                                  "differences": [{"component": k, "a": x, "b": y} for k, x, y in changed]}
        if packages is not None:
            out["packages"] = [{"name": c.name, "a": c.old, "b": c.new} for c in packages]
        emit(to_json(out))
    else:
        if not changed:
            emit(f"{sides[0][0]} and {sides[1][0]}: same component versions")
        else:
            emit(table(["component", args.a, args.b], changed))
        if packages is not None:
            emit(f"\nPython packages (locks): {len(packages)} difference(s)" + (":" if packages else ""))
            if packages:
                emit(table(["package", args.a, args.b], [(c.name, c.old or "-", c.new or "-") for c in packages]))
    return 1 if differ and not args.exit_zero else 0


def _lock_changes(a: str, b: str, loaded: LoadedMatrix | None) -> list[Change] | None:
    """The lock difference of two matrix images (versions added, removed, changed), None without both locks."""
    from factory.cli.inputs import lock_of
    from factory.core import lockfile

    first, second = lock_of(a, loaded), lock_of(b, loaded)
    if first is None or second is None:
        return None
    return lockfile.diff(lockfile.read(first), lockfile.read(second))
