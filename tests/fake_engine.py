"""An in-memory `factory.core.engine.Engine` for unit tests of the build, publish and smoke use cases.

Local images are labels by ref; every build, stamp, push and container run is recorded; builds and pushes fail
on demand. A push can store the image in a test registry (tests/registry_server.py), as `docker push` of a
loaded single-platform image does, so the publishing code meets a real registry API.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from factory.core.engine import BuildRequest, ContainerRun, EngineError, LineSink, LocalImage, RunResult
from factory.core.findings import Mismatch
from factory.core.plan import ImageSpec
from factory.usecases.verify import Verification
from tests.registry_server import RegistryServer


def image_id(labels: Mapping[str, str]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(dict(labels), sort_keys=True).encode()).hexdigest()


@dataclass
class FakeEngine:
    registry: RegistryServer | None = None
    #: seconds each build takes (to see parallel builds overlap, or a heartbeat)
    build_s: float = 0.0
    #: lines every build prints, as BuildKit's plain progress would
    build_lines: tuple[str, ...] = ("#1 [internal] load build definition", "#2 [stage 1/2] FROM base",
                                    "#2 DONE 0.0s", "#3 [stage 2/2] RUN make", "#3 DONE 0.1s")
    #: refs whose build fails
    fail_builds: set[str] = field(default_factory=set)
    #: ref -> how many of its pushes fail before one succeeds
    push_failures: dict[str, int] = field(default_factory=dict)
    #: what every container run returns
    run_result: RunResult = field(default_factory=lambda: RunResult(exit_code=0))
    images: dict[str, LocalImage] = field(default_factory=dict)
    platforms: dict[str, str] = field(default_factory=dict)
    builds: list[BuildRequest] = field(default_factory=list)
    stamps: list[str] = field(default_factory=list)
    pushes: list[str] = field(default_factory=list)  # every attempt, failed or not
    pushed: list[str] = field(default_factory=list)
    runs: list[ContainerRun] = field(default_factory=list)
    #: ("start" | "end", ref) of every build, in the order they happened
    events: list[tuple[str, str]] = field(default_factory=list)
    most_at_once: int = 0
    _running: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def version(self) -> str:
        return "fake 1.0"

    def local_image(self, ref: str) -> tuple[str, dict[str, str]] | None:
        found = self.images.get(ref)
        return None if found is None else LocalImage(found.id, dict(found.labels))

    def build(self, request: BuildRequest, on_line: LineSink) -> None:
        ref = request.tags[0]
        with self._lock:
            self.builds.append(request)
            self.events.append(("start", ref))
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        try:
            for line in self.build_lines:
                on_line(line)
            time.sleep(self.build_s)
            if ref in self.fail_builds:
                on_line("#3 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2")
                raise EngineError("docker buildx build failed (exit 1)")
            self.add(request.tags, dict(request.labels), request.platform)
        finally:
            with self._lock:
                self._running -= 1
                self.events.append(("end", ref))

    def stamp(self, ref: str, tags: tuple[str, ...], platform: str, labels: Mapping[str, str],
              on_line: LineSink) -> None:
        self.stamps.append(ref)
        self.add(tags, {**self.images[ref].labels, **labels}, platform)

    def push(self, ref: str, on_line: LineSink) -> None:
        with self._lock:
            self.pushes.append(ref)
            left = self.push_failures.get(ref, 0)
            if left:
                self.push_failures[ref] = left - 1
        if left:
            raise EngineError(f"push of {ref} failed: connection reset by the fake engine")
        if ref not in self.images:
            raise EngineError(f"push of {ref} failed: no such local image")
        if self.registry is not None:
            name, tag = ref.rsplit(":", 1)
            self.registry.add_single(name.split("/", 1)[1], tag, self.images[ref].labels, self.platforms[ref])
        self.pushed.append(ref)

    def tag(self, source: str, target: str) -> None:
        self.images[target] = self.images[source]
        self.platforms[target] = self.platforms[source]

    def run(self, request: ContainerRun) -> RunResult:
        self.runs.append(request)
        return self.run_result

    def add(self, tags: tuple[str, ...], labels: dict[str, str], platform: str = "linux/arm64") -> None:
        """Hold an image under `tags` (as a build or a pull would)."""
        with self._lock:
            for tag in tags:
                self.images[tag] = LocalImage(image_id(labels), labels)
                self.platforms[tag] = platform


def passing_verify(spec: ImageSpec, namespace: str, root: object) -> Verification:
    """A verify that finds every label true: it measures the proof the factory stamps (`verified`)."""
    return Verification(ref=spec.ref, kind=spec.kind,
                        measured={f"{namespace}.verified": spec.input_digest, f"{namespace}.os": "ubuntu 24.04"})


def failing_verify(*names: str) -> Callable[[ImageSpec, str, object], Verification]:
    """A verify that fails the images named, and passes the others."""

    def measure(spec: ImageSpec, namespace: str, root: object) -> Verification:
        if spec.name not in names:
            return passing_verify(spec, namespace, root)
        wrong = Mismatch("vllm", f"{namespace}.vllm_version", "0.17.0", "0.16.0", "site-packages",
                         "vllm: the label says 0.17.0, the image has 0.16.0")
        return Verification(ref=spec.ref, kind=spec.kind, mismatches=(wrong,))

    return measure
