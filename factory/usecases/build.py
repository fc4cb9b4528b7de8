"""`factory build`: bases first, then each vLLM image on its base (then extra layers), skipping what is up to date.

Nothing is pushed until every image of the run is built (and verified): a failed build leaves no
half-published release behind. Every build streams into a log file of its own, and the run ends with a
JSON report of what was built, skipped or failed, with digests and durations.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.core import labels as L
from factory.core.engine import BuildRequest, Engine, EngineError
from factory.core.errors import WorkFailed
from factory.core.labels import build_time_labels
from factory.core.plan import ImageSpec, Plan
from factory.usecases.progress import Printer, Progress, on_github_actions, to_stderr

if TYPE_CHECKING:
    from factory.usecases.verify import Verification

BUILT, UP_TO_DATE, FAILED, BLOCKED, PUSHED, PLANNED = (
    "built", "up to date", "failed", "not built (its base failed)", "pushed", "planned")
#: The waves of a run, in order: every image of a wave is on an image of an earlier wave, so within a wave
#: builds are independent and run `--jobs` at a time.
WAVES = ("base", "runtime", "vllm", "extra")


@dataclass
class ImageResult:
    name: str
    kind: str
    refs: list[str]
    status: str
    input_digest: str
    digest: str | None = None
    duration_s: float = 0.0
    log: str | None = None
    error: str | None = None
    where: str | None = None  # "local" or "registry" for up-to-date images
    pushed: list[str] = field(default_factory=list)
    verified: bool | None = None
    smoked: bool | None = None  # the GPU smoke test passed (None: not run)
    smoke_report: str | None = None  # where its JSON report was saved
    verify_report: str | None = None  # where verify's findings, mismatches and measured labels were saved


@dataclass
class BuildReport:
    started: str
    images: list[ImageResult]
    pushed: bool = False
    error: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and not any(
            r.status in (FAILED, BLOCKED) or r.verified is False or r.smoked is False for r in self.images)

    def as_dict(self) -> dict[str, Any]:
        return {"started": self.started, "ok": self.ok, "pushed": self.pushed, "error": self.error,
                "aliases": self.aliases, "images": [asdict(r) for r in self.images]}


@dataclass(frozen=True)
class SmokeOptions:
    """Run the GPU smoke program (factory.usecases.smoke) in every vLLM image before anything is pushed."""

    gpus: str = "all"
    arch: str = "sm_121"
    nccl: bool = False
    baseline: Path | None = None  # a known-good smoke report: a backend case it ran must still run
    builtin_baseline: bool = True


@dataclass(frozen=True)
class BuildOptions:
    push: bool = False
    platform: str | None = None
    builder: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    dry_run: bool = False
    verify: bool = True
    force: bool = False
    log_dir: Path = Path(".factory/logs")
    report: Path = Path(".factory/build-report.json")
    registry_check: bool = True
    allow_http: bool = False
    jobs: int = 1
    aliases: dict[str, str] = field(default_factory=dict)  # alias ref -> source ref, pushed last
    push_attempts: int = 4
    network: str | None = None  # e.g. "host", for an index on this machine's loopback
    push_backoff_s: float = 1.0
    smoke: SmokeOptions | None = None  # required smoke test of each vLLM image (needs a GPU host)
    build_ca: Path | None = None  # a CA for the build's downloads, passed as the BuildKit secret `build-ca`
    heartbeat_s: float = 60.0  # a long step silent this long prints "<image>: still building (N s)"; 0: never
    fold_groups: bool | None = None  # fold each image's build steps into a CI group (None: on GitHub Actions)


#: The verify step of a run: (image, label namespace, matrix folder) -> what verify found.
Measure = Callable[[ImageSpec, str, Path], "Verification"]


def git_revision(root: Path) -> str:
    """The commit of the repository holding the matrix ("unknown" outside git)."""
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def _from_dependency(plan: Plan, spec: ImageSpec) -> bool:
    """Whether the image is built FROM the plan image it depends on, so that image's digest is its
    `base.digest`: a runtime image depends on its dev base but is FROM the CUDA image its `base.name` names."""
    return spec.depends_on is not None and plan.get(spec.depends_on).ref == spec.from_ref


def lock_context(spec: ImageSpec, root: Path, options: BuildOptions) -> Path | None:
    """The build context `lock`: one `<layer>.txt` per layer of the image's lock (pins and hashes only, so equal
    layers of two images are equal bytes and one BuildKit cache entry), plus `unlocked.txt`."""
    if spec.lock is None:  # installs from no lock (a runtime image copies its dev base's environment)
        return None
    from factory.core import lockfile
    from factory.core.lockspec import LAYER_FILES

    lock = lockfile.read(root / spec.lock)
    folder = options.log_dir / "lock-context" / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    for layer in LAYER_FILES[spec.kind]:
        (folder / f"{layer}.txt").write_text(lockfile.install_text(lock.layer(layer)), encoding="utf-8")
    unlocked = [entry.split(" ", 1)[0] for entry in lock.header.get("unlocked", ())]
    (folder / "unlocked.txt").write_text("".join(f"{u}\n" for u in unlocked), encoding="utf-8")
    return folder


def request_for(spec: ImageSpec, root: Path, options: BuildOptions, labels: dict[str, str],
                lock_dir: Path | None = None) -> BuildRequest:
    """The one build request of an image: the dry run prints its argv, the real run executes that argv."""
    contexts = (("lock", str(lock_dir)),) if lock_dir else ()
    return BuildRequest(
        build_contexts=contexts,
        context=root / spec.context,
        dockerfile=root / spec.dockerfile,
        tags=spec.refs,
        platform=options.platform or spec.platform,
        build_args=spec.build_args,
        labels=labels,
        target=spec.target,
        load=True,
        builder=options.builder,
        cache_from=options.cache_from,
        cache_to=options.cache_to,
        metadata_file=options.log_dir / f"{spec.name}.metadata.json",
        network=options.network,
        secrets=(f"id=build-ca,src={options.build_ca}",) if options.build_ca else (),
    )


def docker_engine() -> Engine:
    """The default engine: Docker, imported only when something runs (light commands never load it)."""
    from factory.adapters.docker import DockerEngine

    return DockerEngine()


def measure_image(spec: ImageSpec, namespace: str, root: Path) -> Verification:
    """The default verify: scan the local image (factory.usecases.verify) against its labels and its lock."""
    from factory.core import lockfile
    from factory.usecases.verify import measure_local

    lock = lockfile.read(root / spec.env_lock) if spec.env_lock and (root / spec.env_lock).exists() else None
    return measure_local(spec.ref, spec.kind, namespace, expect_os=spec.os, lock=lock)


def run_build(plan: Plan, root: Path, options: BuildOptions, out: Printer = print, *, engine: Engine | None = None,
              measure: Measure | None = None, progress: Printer | None = None) -> BuildReport:
    """Build (verify, smoke-test, push) every image of `plan`. `out` gets a dry run's commands (data, stdout by
    default); `progress` every progress line (stderr by default); `engine` and `measure` are the run's Docker
    and its verify, replaced by fakes in the tests."""
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    revision = git_revision(root)
    if options.dry_run:
        return _dry_run(plan, root, options, started, revision, out)
    fold = on_github_actions() if options.fold_groups is None else options.fold_groups
    run = _Run(plan=plan, root=root, options=options, engine=engine or docker_engine(),
               measure=measure or measure_image, started=started, revision=revision,
               progress=Progress(progress or to_stderr, fold=fold, live=options.jobs == 1,
                                 heartbeat_s=options.heartbeat_s))
    return run.all()


@dataclass(kw_only=True)
class _Run:
    """One build run: its inputs, its seams (engine, verify, progress) and each image's result so far."""

    plan: Plan
    root: Path
    options: BuildOptions
    engine: Engine
    measure: Measure
    progress: Progress
    started: str
    revision: str
    results: dict[str, ImageResult] = field(default_factory=dict)
    gpu: threading.Lock = field(default_factory=threading.Lock)  # one smoke run at a time: they share the GPUs

    def all(self) -> BuildReport:
        plan, options, say = self.plan, self.options, self.progress.say
        version = self.engine.version()
        say(f"engine: Docker {version}; {len(plan.images)} image(s) in the plan")
        options.log_dir.mkdir(parents=True, exist_ok=True)
        self.results = {spec.name: ImageResult(name=spec.name, kind=spec.kind, refs=list(spec.refs),
                                               status=PLANNED, input_digest=spec.input_digest)
                        for spec in plan.images}
        numbered = list(enumerate(plan.images, 1))
        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            # bases first (all of them), then every vLLM image on them, then the extra layers on those: within a
            # wave builds are independent
            for kind in WAVES:
                list(pool.map(lambda item: self.one(*item), [n for n in numbered if n[1].kind == kind]))
        report = BuildReport(started=self.started, images=list(self.results.values()))
        if options.push:
            if report.ok:
                try:
                    _push_all(plan, report, options, say, self.root, engine=self.engine)
                except WorkFailed as error:
                    report.error = str(error)
                    say(f"push: FAILED: {error}")
            else:
                say("push: nothing pushed, because the run did not fully succeed")
        _write_report(report, options.report, say)
        return report

    def one(self, index: int, spec: ImageSpec) -> None:
        head = f"[{index}/{len(self.plan.images)}] {spec.kind} {spec.name}"
        result = self.results[spec.name]
        parent = self.results[spec.depends_on] if spec.depends_on else None
        if parent is not None and parent.status in (FAILED, BLOCKED):
            result.status = BLOCKED
            self.progress.say(f"{head}: not built, its base {parent.name} failed")
            return
        where, local_id = _up_to_date(spec, self.options, engine=self.engine)
        if where:
            result.status, result.where = UP_TO_DATE, where
            result.digest = local_id
            self.progress.say(f"{head}: up to date ({where}), input {spec.input_digest[:19]}")
        else:
            base_digest = parent.digest if parent is not None and _from_dependency(self.plan, spec) else None
            labels = build_time_labels(spec, created=self.started, revision=self.revision, base_digest=base_digest)
            self.build(spec, labels, result, head)
        # verify in the worker, so it overlaps the other builds; an up-to-date image carries the labels that
        # only a passed verify stamps, so it is not verified again
        if self.options.verify and result.status == BUILT:
            self.verify(spec, result)
        # the smoke test runs what is about to be pushed: a new build, or a local image not yet published
        smoke = self.options.smoke
        if (smoke is not None and spec.kind in ("vllm", "extra") and result.verified is not False
                and (result.status == BUILT or result.where == "local")):
            with self.gpu:
                self.smoke(spec, result, smoke)

    def build(self, spec: ImageSpec, labels: dict[str, str], result: ImageResult, head: str) -> None:
        options, say = self.options, self.progress.say
        log_path = options.log_dir / f"{spec.name}.log"
        request = request_for(spec, self.root, options, labels, lock_dir=lock_context(spec, self.root, options))
        result.log = str(log_path)
        start = time.monotonic()
        say(f"{head}: building {spec.ref} ({spec.platform}), log {log_path}")
        with (self.progress.step(spec.name, "building", group=f"{spec.name}: build steps") as step,
              log_path.open("w", encoding="utf-8") as log):
            steps = _Steps(lambda text: step.line(f"{time.monotonic() - start:7.1f}s  {text}"))
            log.write(f"$ {request.command_line()}\n")

            def on_line(line: str) -> None:
                log.write(line + "\n")
                steps.feed(line)

            try:
                self.engine.build(request, on_line)
            except EngineError as error:
                result.status, result.error = FAILED, str(error)
        result.duration_s = round(time.monotonic() - start, 2)
        if result.status == FAILED:
            say(f"{head}: FAILED after {result.duration_s:.1f}s: {result.error}")
            say(_tail(log_path, spec.name))
            say(f"{spec.name}: full log: {log_path}")
            return
        result.status = BUILT
        result.digest = _local_id(self.engine, spec.ref)
        say(f"{head}: built in {result.duration_s:.1f}s, {result.digest}")

    def verify(self, spec: ImageSpec, result: ImageResult) -> None:
        """Check the image's labels against what is really installed (factory.usecases.verify), then stamp what
        was measured (OS, GPU code) as labels; a failure blocks every push and leaves the image unstamped."""
        options, say, namespace = self.options, self.progress.say, self.plan.namespace
        try:
            with self.progress.step(spec.name, "verifying"):
                check = self.measure(spec, namespace, self.root)
        except WorkFailed as error:
            result.verified, result.error = False, f"verify could not read the image: {error}"
            say(f"verify {spec.name}: FAILED: {result.error}")
            return
        path = options.log_dir / f"{spec.name}.verify.json"
        path.write_text(json.dumps(check.as_dict(), indent=2) + "\n", encoding="utf-8")
        result.verified, result.verify_report = check.ok, str(path)
        if not check.ok:
            result.error = "; ".join(m.message for m in check.mismatches)
            say(f"verify {spec.name}: FAILED\n" + "\n".join(f"    {spec.name}: {m.message}" for m in check.mismatches))
            return
        measured = ", ".join(f"{k.removeprefix(namespace + '.')}={v or '-'}" for k, v in check.measured.items())
        try:
            self.engine.stamp(spec.ref, spec.refs, options.platform or spec.platform, check.measured,
                              lambda line: None)
        except EngineError as error:
            result.verified, result.error = False, f"stamping the measured labels failed: {error}"
            say(f"verify {spec.name}: {result.error}")
            return
        result.digest = _local_id(self.engine, spec.ref)
        say(f"verify {spec.name}: every label matches the image content; stamped {measured}")

    def smoke(self, spec: ImageSpec, result: ImageResult, smoke: SmokeOptions) -> None:
        """Run the smoke program in the image on this host's GPUs; a failure blocks every push of the run."""
        from factory.usecases.smoke import expect_from_labels, render_table, smoke_image

        options, say = self.options, self.progress.say
        start = time.monotonic()
        with self.progress.step(spec.name, "smoke-testing"):
            report = smoke_image(spec.ref, gpus=smoke.gpus, arch=smoke.arch, nccl=smoke.nccl,
                                 expect=expect_from_labels(spec.labels, self.plan.namespace),
                                 baseline=smoke.baseline, builtin_baseline=smoke.builtin_baseline,
                                 platform=options.platform or spec.platform, engine=self.engine)
        path = options.log_dir / f"{spec.name}.smoke.json"
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        result.smoked, result.smoke_report = report.ok, str(path)
        took = f"{time.monotonic() - start:.1f}s"
        if report.ok:
            say(f"smoke {spec.name}: passed in {took} ({len(report.passed)} checks, {len(report.skipped)} skipped)")
            return
        names = ", ".join(c.name for c in report.failed)
        result.error = f"smoke test failed: {names} (report {path})"
        say(f"smoke {spec.name}: FAILED in {took}: {names}\n"
            + "\n".join(f"    {spec.name}: {line}" for line in render_table(report).splitlines()))


def _local_id(engine: Engine, ref: str) -> str | None:
    found = engine.local_image(ref)
    return found[0] if found else None


def _up_to_date(spec: ImageSpec, options: BuildOptions, *, engine: Engine | None = None
                ) -> tuple[str | None, str | None]:
    """Where a verified image with the plan's input digest already is ("registry", "local" or None), and its
    local id. When pushing, the registry is asked first: what is published already needs nothing more.

    Only an image with the measured labels counts: the factory stamps them after verify passed, so an image
    that failed verify (or was built with --no-verify) is never taken as done. In the registry, every ref of
    the image (`<tag>` and `<tag>-r<N>`) must hold such an image for the run's platform: a half-pushed image
    (one ref missing, or another platform's image under it) is not done.
    """
    from factory.usecases.verify import is_stamped

    namespace = _namespace(spec)
    key = L.factory_key(namespace, "input_digest")

    def done(labels: dict[str, str] | None) -> bool:
        return labels is not None and labels.get(key) == spec.input_digest and is_stamped(labels, namespace)

    if options.push and options.registry_check:
        published = _registry_labels(spec.refs, options.platform or spec.platform, options)
        if all(done(published[ref]) for ref in spec.refs):
            return "registry", None
    local = (engine or docker_engine()).local_image(spec.ref)
    if local is not None and done(local[1]):
        return "local", local[0]
    return None, None


def _registry_labels(refs: tuple[str, ...], platform: str, options: BuildOptions) -> dict[str, dict[str, str] | None]:
    """The labels of the image each ref holds in the registry for `platform`; None for a ref that is not
    published, has no image for the platform, or cannot be read (the run then builds, and the check before
    pushing says what is wrong)."""
    from factory.adapters.registry import RegistryClient, RegistryError

    out: dict[str, dict[str, str] | None] = {ref: None for ref in refs}
    try:
        with RegistryClient(allow_http=options.allow_http) as client:
            for ref in refs:
                if client.exists(ref) is None:
                    break  # not published: not up to date, whatever the other refs hold
                out[ref] = client.labels(ref, platform)
    except RegistryError:
        pass
    return out


def _namespace(spec: ImageSpec) -> str:
    key = next(k for k in spec.labels if k.endswith(".input_digest"))
    return key.removesuffix(".input_digest")


class _Steps:
    """Turns BuildKit's plain progress into one line per step: `[stage 2/5] RUN ...  done 12.3s`."""

    _NAMED = re.compile(r"^#(\d+) (\[[^\]]+\] .*)$")
    _END = re.compile(r"^#(\d+) (DONE [\d.]+s|CACHED|ERROR.*)$")

    def __init__(self, show: Callable[[str], None]) -> None:
        self.show = show
        self.names: dict[str, str] = {}

    def feed(self, line: str) -> None:
        text = line.strip()
        named = self._NAMED.match(text)
        if named and "[internal]" not in named[2] and named[1] not in self.names:
            self.names[named[1]] = named[2][:110]
            return
        end = self._END.match(text)
        if end and end[1] in self.names:
            self.show(f"{self.names.pop(end[1])}  {end[2].lower()}")


def _tail(path: Path, name: str, lines: int = 25) -> str:
    """The last lines of a failed build's log, each naming its image."""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(f"    {name} | {line}" for line in text[-lines:])


def _push_all(plan: Plan, report: BuildReport, options: BuildOptions, out: Printer, root: Path, *,
              engine: Engine | None = None) -> None:
    """Publish the run: refuse to overwrite what is published (factory.usecases.publish.check_immutable), push the
    immutable refs (`<tag>-r<N>`) of every image first, then every mutable ref (`<tag>`: bases, images, extra
    layers), then move the aliases in the registry, by digest. A failure stops the run where it is: new
    revision refs may exist, some `<tag>`s may have moved, no alias moved before every `<tag>` did; a rerun
    pushes what is missing and rebuilds nothing."""
    from factory.usecases.publish import check_immutable, push_order

    engine = engine or docker_engine()
    check_immutable(plan, report, options, out)
    results = {r.name: r for r in report.images}
    pending = [spec for spec in plan.images if results[spec.name].where != "registry"]
    order = push_order(pending)
    for n, (spec, ref) in enumerate(order):
        result = results[spec.name]
        try:
            _push_with_retries(engine, ref, options, out)
        except WorkFailed as error:
            left = [r for _, r in order[n:]] + list(options.aliases)
            raise WorkFailed(f"{error}; not pushed: {', '.join(left)}") from None
        result.pushed.append(ref)
        if result.status == BUILT and set(result.pushed) >= set(spec.refs):
            result.status = PUSHED
    try:
        _attach_sboms(engine, list(plan.images), root, options, out)
    except WorkFailed as error:
        raise WorkFailed(f"{error}; not moved: {', '.join(options.aliases) or 'no aliases'} (rerun to finish)") \
            from None
    _move_aliases(options, report, out)
    report.pushed = True


def _attach_sboms(engine: Engine, specs: list[ImageSpec], root: Path, options: BuildOptions, out: Printer) -> None:
    """Attach to every pushed image its SBOM (CycloneDX, from its lock and the labels verify stamped) as an OCI
    referrer, before any alias moves; an SBOM already attached with the same bytes is not attached again."""
    from factory.adapters.registry import RegistryClient, RegistryError
    from factory.core import lockfile
    from factory.core.exports import sbom

    with RegistryClient(allow_http=options.allow_http) as client:
        for spec in specs:
            if not spec.env_lock or not (root / spec.env_lock).exists():
                continue
            local = engine.local_image(spec.ref)
            labels = local[1] if local else client.labels(spec.ref, options.platform or spec.platform)
            created = labels.get(L.oci_key("created"), "")
            doc = sbom.cyclonedx(lockfile.read(root / spec.env_lock), labels, image_ref=spec.ref,
                                 namespace=_namespace(spec), created=created)
            data = sbom.encode(doc)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            try:
                subject = client.descriptor(spec.ref)
                have = client.referrers(spec.ref, subject["digest"], sbom.MEDIA_TYPE)
                if any(d.get("annotations", {}).get(SBOM_DIGEST) == digest for d in have):
                    out(f"sbom {spec.ref}: attached already")
                    continue
                attached = client.attach(spec.ref, subject["digest"], subject["mediaType"], subject["size"],
                                         sbom.MEDIA_TYPE, data, {SBOM_DIGEST: digest,
                                                                 L.oci_key("created"): created or _now()})
            except RegistryError as error:
                raise WorkFailed(f"sbom {spec.ref}: {error}") from None
            out(f"sbom {spec.ref}: attached {attached[:19]} ({len(data)} bytes, {len(doc['components'])} "
                "components)")


#: Annotation of an attached SBOM: the digest of its document, so a rerun knows it is there.
SBOM_DIGEST = "dev.spark-image-factory.core.exports.sbom.digest"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _move_aliases(options: BuildOptions, report: BuildReport, out: Printer) -> None:
    """Point each alias at its source's manifest through the registry API (no local image needed: the source
    may exist only in the registry, when a rerun found everything up to date there)."""
    from factory.adapters.registry import RegistryClient

    if not options.aliases:
        return
    with RegistryClient(allow_http=options.allow_http) as client:
        for n, (alias, source) in enumerate(options.aliases.items()):
            try:
                digest = client.tag(source, alias)
            except WorkFailed as error:
                left = list(options.aliases)[n:]
                raise WorkFailed(f"moving {alias} to {source} failed: {error}; not moved: {', '.join(left)}"
                                 ) from None
            out(f"alias {alias} -> {source.rsplit(':', 1)[-1]} ({digest[:19]})")
            report.aliases[alias] = source


def _push_with_retries(engine: Engine, ref: str, options: BuildOptions, out: Printer) -> None:
    """Push one ref, retrying with exponential backoff: a registry's hiccup should not fail a release."""
    for attempt in range(1, options.push_attempts + 1):
        start = time.monotonic()
        try:
            engine.push(ref, lambda line: None)
        except EngineError as error:
            if attempt == options.push_attempts:
                raise EngineError(f"{error} (gave up after {attempt} attempts; rerun to finish the "
                                         "release: what is already pushed is not rebuilt)") from None
            delay = options.push_backoff_s * 2 ** (attempt - 1)
            out(f"push {ref}: attempt {attempt} failed ({error}); retrying in {delay:.0f}s")
            time.sleep(delay)
            continue
        out(f"push {ref}: done in {time.monotonic() - start:.1f}s")
        return


def _write_report(report: BuildReport, path: Path, out: Printer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    built = sum(r.status in (BUILT, PUSHED) for r in report.images)
    fresh = sum(r.status == UP_TO_DATE for r in report.images)
    failed = sum(r.status in (FAILED, BLOCKED) for r in report.images)
    out(f"summary: {built} built, {fresh} up to date, {failed} failed; report {path}")


def _dry_run(plan: Plan, root: Path, options: BuildOptions, started: str, revision: str,
             out: Printer) -> BuildReport:
    """Print every command the run would run, exactly as it would run it (`out`: data, stdout)."""
    import shlex

    from factory.usecases.smoke import expect_from_labels, smoke_command

    results = []
    for spec in plan.images:
        base_digest = f"<digest of {spec.depends_on}>" if _from_dependency(plan, spec) else None
        labels = build_time_labels(spec, created=started, revision=revision, base_digest=base_digest)
        lock_dir = options.log_dir / "lock-context" / spec.name if spec.lock else None
        out(request_for(spec, root, options, labels, lock_dir=lock_dir).command_line())
        if options.smoke and spec.kind in ("vllm", "extra"):
            smoke = options.smoke
            out(shlex.join(smoke_command(spec.ref, gpus=smoke.gpus, arch=smoke.arch, nccl=smoke.nccl,
                                       expect=expect_from_labels(spec.labels, plan.namespace),
                                       baseline=smoke.baseline, builtin_baseline=smoke.builtin_baseline,
                                       platform=options.platform or spec.platform)))
        results.append(ImageResult(name=spec.name, kind=spec.kind, refs=list(spec.refs), status=PLANNED,
                                   input_digest=spec.input_digest))
    if options.push:
        from factory.usecases.publish import push_order

        for _spec, ref in push_order(plan.images):
            out(f"docker push {ref}")
    return BuildReport(started=started, images=results)
