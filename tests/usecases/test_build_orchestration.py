"""The build run's orchestration on an in-memory engine (tests/fake_engine.py): waves, parallel jobs, blocked
images, skip-if-up-to-date, push gating, push retries, aliases, the dry run's argv, and progress lines.

No Docker: the engine is a fake and verify is faked at its seam (`measure`); publishing meets a real registry
API (tests/registry_server.py on 127.0.0.1). tests/usecases/test_build_engine.py proves the same run on a real engine.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from factory.core.engine import LineSink, RunResult
from factory.core.matrix import load
from factory.core.plan import Plan, build_plan
from factory.core.resolve import resolve
from factory.usecases.build import (
    BLOCKED,
    BUILT,
    FAILED,
    PUSHED,
    UP_TO_DATE,
    BuildOptions,
    BuildReport,
    Measure,
    SmokeOptions,
    request_for,
    run_build,
)
from tests.conftest import NIXL, SMALL
from tests.fake_engine import FakeEngine, failing_verify, passing_verify
from tests.registry_server import RegistryServer

NS = "dev.scitrera"
ON_REGISTRY = SMALL.replace("schema = 1\n", """schema = 1

[defaults.repositories]
base = "{host}/factory-test/pytorch-dev"
vllm = "{host}/factory-test/vllm"
""")


PlanOf = Callable[..., Plan]


@pytest.fixture
def plan_of(write_matrix: Callable[[str], Path], tmp_path: Path) -> PlanOf:
    """The plan of a matrix text, with the Dockerfiles it names (an extra layer's too)."""

    def plan(text: str = SMALL + NIXL) -> Plan:
        (tmp_path / "dockerfiles").mkdir(exist_ok=True)
        (tmp_path / "dockerfiles" / "nixl.Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
        return build_plan(resolve(load(write_matrix(text))))

    return plan


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RegistryServer]:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-credentials"))
    with RegistryServer() as srv:
        yield srv


def options(tmp_path: Path, **kw: object) -> BuildOptions:
    base = BuildOptions(log_dir=tmp_path / "logs", report=tmp_path / "report.json", push_attempts=1,
                        push_backoff_s=0, heartbeat_s=0, fold_groups=False)
    return replace(base, **kw)  # type: ignore[arg-type]


def build(plan: Plan, tmp_path: Path, engine: FakeEngine, *, measure: Measure = passing_verify, **kw: object
          ) -> tuple[BuildReport, list[str]]:
    said: list[str] = []
    data: list[str] = []
    report = run_build(plan, tmp_path, options(tmp_path, **kw), data.append, engine=engine, measure=measure,
                       progress=said.append)
    assert data == [], "a run that builds prints its progress, never data"
    return report, said


def statuses(report: BuildReport) -> dict[str, str]:
    return {r.name: r.status for r in report.images}


# ---------------------------------------------------------------------------------------------------------
# waves and jobs


def test_waves_build_every_parent_first_and_the_images_of_a_wave_in_parallel(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of()
    engine = FakeEngine(build_s=0.05)
    report, _ = build(plan, tmp_path, engine, jobs=4)
    assert report.ok and set(statuses(report).values()) == {BUILT}
    assert [s.kind for s in plan.images] == ["base", "runtime", "vllm", "vllm", "extra", "extra"]
    ended = {ref: n for n, (what, ref) in enumerate(engine.events) if what == "end"}
    started = {ref: n for n, (what, ref) in enumerate(engine.events) if what == "start"}
    for spec in plan.images:
        if spec.depends_on:
            assert ended[plan.get(spec.depends_on).ref] < started[spec.ref], spec.name
    assert engine.most_at_once == 2, "the two vLLM images (and the two layers) build at once"
    # each image FROM a plan image names that image's digest, as built and stamped
    runtime, image = plan.get("2.10.0-cu131-runtime"), plan.get("0.17.0-t5")
    labels = next(r.labels for r in engine.builds if r.tags == image.refs)
    assert labels["org.opencontainers.image.base.digest"] == engine.images[runtime.ref].id
    assert "org.opencontainers.image.base.digest" not in next(r.labels for r in engine.builds
                                                              if r.tags == runtime.refs), "FROM the CUDA image"


def test_one_job_builds_one_image_at_a_time_in_plan_order(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of()
    engine = FakeEngine(build_s=0.01)
    report, _ = build(plan, tmp_path, engine, jobs=1)
    assert report.ok and engine.most_at_once == 1
    assert [r.tags[0] for r in engine.builds] == [s.ref for s in plan.images]


def test_a_failed_image_blocks_what_is_on_it_and_its_siblings_go_on(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of()
    engine = FakeEngine(fail_builds={plan.get("0.17.0-t4").ref})
    report, said = build(plan, tmp_path, engine, jobs=2)
    assert statuses(report) == {"2.10.0-cu131": BUILT, "2.10.0-cu131-runtime": BUILT, "0.17.0-t4": FAILED,
                                "0.17.0-t5": BUILT, "0.17.0-t4-nixl": BLOCKED, "0.17.0-t5-nixl": BUILT}
    assert not report.ok
    assert plan.get("0.17.0-t4-nixl").ref not in [r.tags[0] for r in engine.builds]
    assert any(line.endswith("0.17.0-t4-nixl: not built, its base 0.17.0-t4 failed") for line in said)
    failed = next(r for r in report.images if r.name == "0.17.0-t4")
    assert failed.error == "docker buildx build failed (exit 1)" and Path(failed.log or "").exists()
    assert "0.17.0-t4 | #3 ERROR: process" in "\n".join(said), "the log's tail, naming its image"


def test_a_failed_base_blocks_everything_on_it(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of(SMALL)
    engine = FakeEngine(fail_builds={plan.get("2.10.0-cu131").ref})
    report, _ = build(plan, tmp_path, engine)
    assert statuses(report) == {"2.10.0-cu131": FAILED, "2.10.0-cu131-runtime": BLOCKED, "0.17.0-t4": BLOCKED,
                                "0.17.0-t5": BLOCKED}
    assert len(engine.builds) == 1


# ---------------------------------------------------------------------------------------------------------
# skip if up to date


def test_a_second_run_builds_nothing_and_a_pin_change_rebuilds_only_what_it_touches(plan_of: PlanOf,
                                                                                    tmp_path: Path) -> None:
    engine = FakeEngine()
    report, _ = build(plan_of(SMALL), tmp_path, engine)
    assert report.ok and len(engine.builds) == 4 and len(engine.stamps) == 4
    report, said = build(plan_of(SMALL), tmp_path, engine)
    assert set(statuses(report).values()) == {UP_TO_DATE} and len(engine.builds) == 4
    assert all(r.where == "local" and r.digest == engine.images[r.refs[0]].id for r in report.images)
    assert "[3/4] vllm 0.17.0-t4: up to date (local), input sha256:" in "\n".join(said)
    changed = plan_of(SMALL.replace('transformers = "5.3.0"', 'transformers = "5.3.1"'))
    report, _ = build(changed, tmp_path, engine)
    assert statuses(report) == {"2.10.0-cu131": UP_TO_DATE, "2.10.0-cu131-runtime": UP_TO_DATE,
                                "0.17.0-t4": UP_TO_DATE, "0.17.0-t5": BUILT}


def test_an_image_with_the_input_digest_but_no_verify_stamp_is_built_again(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of(SMALL)
    engine = FakeEngine()
    build(plan, tmp_path, engine, verify=False)
    assert engine.stamps == []
    report, _ = build(plan, tmp_path, engine)
    assert set(statuses(report).values()) == {BUILT} and len(engine.builds) == 8
    assert all(r.verified for r in report.images)


# ---------------------------------------------------------------------------------------------------------
# push gating, retries, aliases


def test_nothing_is_pushed_when_any_build_failed(plan_of: PlanOf, tmp_path: Path, registry: RegistryServer) -> None:
    plan = plan_of(ON_REGISTRY.replace("{host}", registry.host))
    engine = FakeEngine(registry=registry, fail_builds={plan.get("0.17.0-t5").ref})
    report, said = build(plan, tmp_path, engine, push=True)
    assert not report.ok and not report.pushed and engine.pushes == []
    assert registry.tags == {}, "the registry holds nothing of a failed run"
    assert "push: nothing pushed, because the run did not fully succeed" in said
    assert json.loads((tmp_path / "report.json").read_text())["ok"] is False


def test_nothing_is_pushed_when_verify_failed(plan_of: PlanOf, tmp_path: Path, registry: RegistryServer) -> None:
    plan = plan_of(ON_REGISTRY.replace("{host}", registry.host))
    engine = FakeEngine(registry=registry)
    report, said = build(plan, tmp_path, engine, push=True, measure=failing_verify("0.17.0-t4"))
    assert set(statuses(report).values()) == {BUILT}
    assert [r.verified for r in report.images] == [True, True, False, True]
    assert not report.ok and engine.pushes == [] and registry.tags == {}
    assert plan.get("0.17.0-t4").ref not in engine.stamps, "an image that failed verify is never stamped"
    assert "    0.17.0-t4: vllm: the label says 0.17.0, the image has 0.16.0" in "\n".join(said)


def test_nothing_is_pushed_when_the_smoke_test_failed(plan_of: PlanOf, tmp_path: Path,
                                                      registry: RegistryServer) -> None:
    plan = plan_of(ON_REGISTRY.replace("{host}", registry.host))
    failed = {"ok": False, "checks": [{"name": "gpu_visible", "ok": False, "detail": "no GPU"}]}
    engine = FakeEngine(registry=registry, run_result=RunResult(exit_code=1, stdout=json.dumps(failed)))
    report, said = build(plan, tmp_path, engine, push=True, smoke=SmokeOptions(gpus="none"))
    assert [r.smoked for r in report.images] == [None, None, False, False], "vLLM images only"
    assert [run.image for run in engine.runs] == [plan.get("0.17.0-t4").ref, plan.get("0.17.0-t5").ref]
    assert engine.runs[0].argv()[:4] == ["docker", "run", "--rm", "--platform=linux/arm64"]
    assert not report.ok and engine.pushes == [] and registry.tags == {}
    assert any(line.startswith("smoke 0.17.0-t4: FAILED in ") for line in said)


def test_a_run_pushes_every_image_revision_refs_first_then_moves_the_aliases_last(plan_of: PlanOf, tmp_path: Path,
                                                                                  registry: RegistryServer) -> None:
    text = ON_REGISTRY.replace("{host}", registry.host).replace('transformers = "4.57.6"\n',
                                                                 'transformers = "4.57.6"\nrevision = 2\n', 1)
    plan = plan_of(text)
    repo = plan.get("0.17.0-t5").ref.rsplit(":", 1)[0]
    aliases = {f"{repo}:latest": f"{repo}:0.17.0-t5", f"{repo}:0.17-t4": f"{repo}:0.17.0-t4"}
    engine = FakeEngine(registry=registry)
    seen_aliases: list[bool] = []
    push = engine.push

    def watched(ref: str, on_line: LineSink) -> None:
        seen_aliases.append(any(tag in registry.tags.get("factory-test/vllm", {}) for tag in ("latest", "0.17-t4")))
        push(ref, on_line)

    engine.push = watched  # type: ignore[method-assign]
    report, said = build(plan, tmp_path, engine, push=True, aliases=aliases)
    assert report.ok and report.pushed and report.aliases == aliases
    refs = [ref for spec in plan.images for ref in spec.refs]
    assert sorted(engine.pushed) == sorted(refs)
    assert engine.pushed[0] == f"{repo}:0.17.0-t4-r2", "the immutable revision ref goes first"
    assert seen_aliases and not any(seen_aliases), "no alias moves before every push is done"
    assert registry.tags["factory-test/vllm"]["latest"] == registry.tags["factory-test/vllm"]["0.17.0-t5"]
    assert set(statuses(report).values()) == {PUSHED}
    assert said.index(f"alias {repo}:latest -> 0.17.0-t5 ({registry.tags['factory-test/vllm']['latest'][:19]})") \
        > max(n for n, line in enumerate(said) if line.startswith("push "))
    # a rerun finds everything in the registry: it builds and pushes nothing
    again = FakeEngine(registry=registry)
    report, _ = build(plan, tmp_path, again, push=True, aliases=aliases)
    assert report.ok and set(statuses(report).values()) == {UP_TO_DATE} and not again.builds and not again.pushes
    assert {r.where for r in report.images} == {"registry"}


def test_a_push_is_retried_and_a_push_that_keeps_failing_moves_no_alias(plan_of: PlanOf, tmp_path: Path,
                                                                        registry: RegistryServer) -> None:
    plan = plan_of(ON_REGISTRY.replace("{host}", registry.host))
    repo = plan.get("0.17.0-t5").ref.rsplit(":", 1)[0]
    aliases = {f"{repo}:latest": f"{repo}:0.17.0-t5"}
    flaky = plan.get("0.17.0-t4").ref
    engine = FakeEngine(registry=registry, push_failures={flaky: 2})
    report, said = build(plan, tmp_path, engine, push=True, push_attempts=3, aliases=aliases)
    assert report.ok and engine.pushes.count(flaky) == 3
    assert f"push {flaky}: attempt 1 failed (push of {flaky} failed: connection reset by the fake engine); " \
           "retrying in 0s" in said

    plan = plan_of(ON_REGISTRY.replace("{host}", registry.host).replace("factory-test", "factory-two"))
    broken = plan.get("0.17.0-t5").ref
    repo = broken.rsplit(":", 1)[0]
    engine = FakeEngine(registry=registry, push_failures={broken: 5})
    report, said = build(plan, tmp_path, engine, push=True, push_attempts=2,
                         aliases={f"{repo}:latest": f"{repo}:0.17.0-t5"})
    assert not report.ok and not report.pushed and report.aliases == {}
    assert engine.pushes.count(broken) == 2
    assert report.error is not None and "gave up after 2 attempts" in report.error
    assert report.error.endswith(f"not pushed: {broken}, {repo}:latest")
    assert "latest" not in registry.tags["factory-two/vllm"]


# ---------------------------------------------------------------------------------------------------------
# the dry run prints what runs


def test_the_dry_run_prints_exactly_the_argv_a_build_runs(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of()
    printed: list[str] = []
    report = run_build(plan, tmp_path, options(tmp_path, dry_run=True), printed.append, engine=FakeEngine())
    assert [r.status for r in report.images] == ["planned"] * len(plan.images)
    engine = FakeEngine()
    build(plan, tmp_path, engine)
    assert len(printed) == len(engine.builds) == len(plan.images)
    for line, request in zip(printed, engine.builds, strict=True):
        ran = request.argv()
        shown = shlex.split(line)
        # what only the real run knows: when it started, and the digest of the image it is FROM
        for n, word in enumerate(ran):
            if word.startswith(("org.opencontainers.image.created=", "org.opencontainers.image.base.digest=")):
                assert shown[n].split("=", 1)[0] == word.split("=", 1)[0]
                shown[n] = word
        assert shown == ran
        assert request.command_line() == shlex.join(ran)
    log = (tmp_path / "logs" / f"{plan.images[0].name}.log").read_text().splitlines()
    assert log[0] == "$ " + engine.builds[0].command_line(), "the log starts with the command it ran"


def test_the_dry_run_of_a_release_lists_builds_then_smoke_runs_then_pushes(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of(SMALL)
    printed: list[str] = []
    run_build(plan, tmp_path, options(tmp_path, dry_run=True, push=True, smoke=SmokeOptions()), printed.append)
    words = [line.split()[:3] for line in printed]
    assert words[:2] == [["docker", "buildx", "build"]] * 2
    assert [w[:2] for w in words[2:6]] == [["docker", "buildx"], ["docker", "run"], ["docker", "buildx"],
                                           ["docker", "run"]]
    assert printed[6:] == [f"docker push {spec.ref}" for spec in plan.images]
    request = request_for(plan.images[0], tmp_path, options(tmp_path), {})
    assert request.argv()[:5] == ["docker", "buildx", "build", "--progress", "plain"]


def test_a_build_ca_is_passed_by_path_never_by_content(plan_of: PlanOf, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nSECRET\n-----END CERTIFICATE-----\n")
    plan = plan_of(SMALL)
    engine = FakeEngine()
    build(plan, tmp_path, engine, build_ca=ca)
    for request in engine.builds:
        assert f"id=build-ca,src={ca}" in request.argv() and "SECRET" not in request.command_line()


# ---------------------------------------------------------------------------------------------------------
# progress


def test_every_progress_line_names_its_image(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of()
    engine = FakeEngine(fail_builds={plan.get("0.17.0-t4").ref})
    _, said = build(plan, tmp_path, engine, jobs=2)
    names = [spec.name for spec in plan.images]
    general = ("engine: ", "summary: ", "push: ")
    for line in "\n".join(said).splitlines():
        assert line.startswith(general) or any(name in line for name in names), line
    assert any(line.startswith("0.17.0-t5:") and "[stage 2/2] RUN make  done 0.1s" in line for line in said)


def test_a_silent_step_gets_a_heartbeat_naming_its_image(plan_of: PlanOf, tmp_path: Path) -> None:
    plan = plan_of(SMALL)
    engine = FakeEngine(build_s=0.07, build_lines=())
    _, said = build(plan, tmp_path, engine, heartbeat_s=0.02)
    for spec in plan.images:
        beats = [line for line in said if line.startswith(f"{spec.name}: still building (")]
        assert beats and beats[0].endswith(" s)"), spec.name


def test_on_github_actions_each_image_s_build_steps_fold_into_a_group(plan_of: PlanOf, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    plan = plan_of()
    for jobs in (1, 3):
        _, said = build(plan, tmp_path, FakeEngine(build_s=0.01), jobs=jobs, fold_groups=None)
        opened = [n for n, line in enumerate(said) if line.startswith("::group::")]
        assert len(opened) == len(plan.images), jobs
        for start in opened:
            image = said[start].removeprefix("::group::").split(":")[0]
            end = said.index("::endgroup::", start)
            assert end > start + 1 and all(line.startswith(f"{image}: ") for line in said[start + 1:end]), jobs
    monkeypatch.setenv("GITHUB_ACTIONS", "false")
    _, said = build(plan, tmp_path, FakeEngine(), fold_groups=None)
    assert not any(line.startswith("::") for line in said)
