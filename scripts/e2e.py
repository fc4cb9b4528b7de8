"""End-to-end: build the shipped wheel-mode release for real on the CUDA twin, then check it as a user would.

    python scripts/e2e.py --arch amd64 [--build-ca FILE] [--report-dir docs/e2e] [--clean]
                          [--ship-on runtime|dev] [--with-sibling]

1. the CUDA twin for the platform, both flavors (scripts/twin.sh: devel for the dev bases, base for their
   runtime images; cached; imported when missing);
2. a matrix for the twin, generated from matrix.toml: every wheel-mode base and the tags on it, with the
   twin as CUDA image, Python 3.13 (the twin's one deviation), a local registry as the repositories and no
   FlashInfer index (unreachable here, so no flashinfer-jit-cache); wheel-mode extra layers on those tags
   come along (source-mode ones would clone from git hosts); its locks in .factory/e2e/<arch>/locks.
   vLLM images ship on the runtime images (the matrix's default); `--ship-on dev` builds them on the dev
   bases instead (repositories e2e-<arch>-dev, report <arch>-dev.*), for the size benchmark's comparison;
   `--with-sibling` adds to every wheel-mode tag a sibling `<tag>alt` that differs only in its Transformers
   (the shipped matrix has no wheel-mode -t4/-t5 pair: vLLM 0.33.0 needs tokenizers>=0.23.2, Transformers
   4.57.6 tokenizers<=0.23.0), for the benchmark's bytes-a-sibling-adds figure;
3. `factory lock` for that matrix (the twin's platform and Python), then `factory release` of those images:
   real Dockerfiles installing exactly their locks, verify (labels and installed set == lock), stamped
   measured labels, push, aliases;
4. per image: verify's findings (saved by the release beside its build log, or `factory verify --json` for an
   image an earlier run built), `factory smoke --gpus none` (natively only:
   under QEMU `import torch` crashes), `factory inspect --remote` (labels read back from the registry),
   image and layer sizes (uncompressed from the engine, compressed and digests from the registry), the floor
   (bytes of the installed site-packages plus the CUDA/NCCL libraries outside it that torch loads) and build
   steps with times;
5. a second `factory release`, which must find everything published and build nothing;
6. a report, `<report-dir>/<arch>.json` and `<arch>.md`.

Exit 0 only when every step passed. Needs root, the engine (`make engine`) and the package index.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host_platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TWIN_CUDA = "13.0.3"  # the CUDA of the shipped wheel-mode base; the twin script builds exactly this
REGISTRY = "127.0.0.1:5000"
#: vLLM -> the Transformers of its sibling (--with-sibling): the lowest release inside its declared range
SIBLING_TRANSFORMERS = {"0.33.0": "5.16.1"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=("amd64", "arm64"), required=True)
    p.add_argument("--build-ca", type=Path, default=_default_ca(), help="CA for the builds' downloads")
    p.add_argument("--report-dir", type=Path, default=REPO / "docs" / "e2e")
    p.add_argument("--clean", action="store_true", help="remove the built images from the engine at the end")
    p.add_argument("--ship-on", choices=("runtime", "dev"), default="runtime",
                   help="what the vLLM images are built FROM (default: runtime, the matrix's default)")
    p.add_argument("--with-sibling", action="store_true",
                   help="add to every tag a sibling that differs only in Transformers (SIBLING_TRANSFORMERS)")
    args = p.parse_args(argv)
    e2e = E2E(args.arch, args.build_ca, args.report_dir, ship_on=args.ship_on, with_sibling=args.with_sibling)
    try:
        ok = e2e.run()
    finally:
        if args.clean:
            e2e.clean()
    return 0 if ok else 1


def _default_ca() -> Path | None:
    """This machine's TLS-inspecting proxy CA, when there is one (see README: builds behind a proxy)."""
    env = os.environ.get("FACTORY_BUILD_CA")
    if env:
        return Path(env)
    found = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    return found[0] if len(found) == 1 else _egress_ca(found)


def _egress_ca(found: list[Path]) -> Path | None:
    egress = [f for f in found if "egress" in f.name]
    return egress[0] if egress else None


class E2E:
    def __init__(self, arch: str, build_ca: Path | None, report_dir: Path, *, ship_on: str = "runtime",
                 with_sibling: bool = False) -> None:
        self.arch = arch
        self.ship_on = ship_on
        self.with_sibling = with_sibling
        self.name = arch if ship_on == "runtime" else f"{arch}-dev"  # report, repositories and work folder
        self.platform = f"linux/{arch}"
        self.native = _host_arch() == arch
        self.build_ca = build_ca
        self.report_dir = report_dir
        self.work = REPO / ".factory" / "e2e" / self.name
        self.matrix = REPO / f".e2e-{self.name}.toml"  # beside matrix.toml: its dockerfile paths stay valid
        self.steps: list[dict] = []
        self.images: list[dict] = []
        self.bases: list[str] = []
        self.base_repository = ""
        self.ok = True

    # --- the run ------------------------------------------------------------------------------------------

    def run(self) -> bool:
        self.work.mkdir(parents=True, exist_ok=True)
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        twin = self.step("twin", ["bash", "scripts/twin.sh", "build", "--arch", self.arch, "--flavor", "all"])
        twin_ref = _run(["bash", "scripts/twin.sh", "ref", "--arch", self.arch]).stdout.strip()
        runtime_ref = _run(["bash", "scripts/twin.sh", "ref", "--arch", self.arch, "--flavor", "base"]).stdout.strip()
        if not twin["ok"] or not twin_ref or not runtime_ref:
            return self.write(started)
        names = self.write_matrix(twin_ref, runtime_ref)
        # a fresh registry for every run: a copy from a run of other content would be, rightly, immutable
        self.forget(local=False)
        factory = [sys.executable, "-m", "factory"]
        ca = ["--build-ca", str(self.build_ca)] if self.build_ca else []
        # the twin's images run Python 3.13 on linux/<arch>: their own locks, resolved now (the shipped locks
        # are for linux/arm64 and Python 3.12); the release installs exactly them and verify compares
        lock = self.step("lock", [*factory, "lock", *names, "--matrix", str(self.matrix)])
        if not lock["ok"]:
            return self.write(started)
        # Two releases, as a maintainer with a small disk would run them: the bases (with their runtime images),
        # then the vLLM images and layers. Between them a runtime-shipped release no longer needs the dev base on
        # this machine (the registry has it; the vLLM images are built FROM the runtime image) nor the package
        # cache of its build: both go, which keeps the whole run within a CI machine's disk.
        from factory.core.matrix import runtime_name

        bases = self.bases + ([runtime_name(b) for b in self.bases] if self.ship_on == "runtime" else [])
        release = self.release_step("release the bases (cold or warm cache)", bases, "release-bases", factory, ca)
        if release["ok"] and self.ship_on == "runtime":
            self.free_dev_bases()
        rest = [n for n in names if n not in bases]
        if release["ok"]:
            release = self.release_step("release the vLLM images (cold or warm cache)", rest, "release", factory, ca)
        self.check_siblings()
        if release["ok"]:
            again = self.work / "release-again.json"
            self.step("release again (must build nothing)", [
                *factory, "release", *names, "--matrix", str(self.matrix), "--jobs", "1", *ca,
                "--log-dir", str(self.work / "logs-again"), "--report", str(again)],
                check=lambda: _nothing_built(again))
        return self.write(started)

    def step(self, name: str, cmd: list[str], check=None) -> dict:
        print(f"\n=== e2e {self.arch}: {name}\n$ {' '.join(cmd)}", flush=True)
        start = time.monotonic()
        log = self.work / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.log"
        with log.open("w", encoding="utf-8") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:
                sys.stdout.write(line)
                out.write(line)
            code = proc.wait()
        problem = None if code == 0 else f"exit {code}"
        if problem is None and check is not None:
            problem = check()
        result = {"step": name, "ok": problem is None, "seconds": round(time.monotonic() - start, 1),
                  "command": " ".join(cmd[2:] if cmd[0] == sys.executable else cmd), "problem": problem,
                  "log": str(log.relative_to(REPO))}
        self.steps.append(result)
        self.ok &= result["ok"]
        print(f"=== e2e {self.arch}: {name}: {'ok' if result['ok'] else 'FAILED: ' + problem} "
              f"in {result['seconds']}s", flush=True)
        return result

    def write_matrix(self, twin_ref: str, runtime_ref: str) -> list[str]:
        """The twin's matrix: the shipped wheel-mode bases and their tags, nothing else changed but the
        CUDA image, Python, the platform and the repositories. Returns the names to release."""
        import tomlkit

        doc = tomlkit.parse((REPO / "matrix.toml").read_text(encoding="utf-8"))
        bases = [name for name, base in doc["base"].items() if base.get("mode") == "wheels"]
        tags = [tag for tag, image in doc["image"].items() if image["base"] in bases]
        for table, keep in (("base", bases), ("image", tags)):
            for name in [n for n in doc[table] if n not in keep]:
                del doc[table][name]
        if self.with_sibling:
            for tag in [t for t in tags if str(doc["image"][t]["vllm"]) in SIBLING_TRANSFORMERS]:
                sibling = tomlkit.table()
                for key, value in doc["image"][tag].items():
                    if key != "default":
                        sibling[key] = value
                sibling["transformers"] = SIBLING_TRANSFORMERS[str(sibling["vllm"])]
                waiver = tomlkit.inline_table()
                waiver.update({"rule": "builtin/tag-name",
                               "reason": "a size-benchmark sibling of its tag: only its Transformers layer differs"})
                sibling["allow"] = [*sibling.get("allow", []), waiver]
                doc["image"][f"{tag}alt"] = sibling
                tags.append(f"{tag}alt")
        import fnmatch

        extras = []
        for name, extra in list(doc.get("extra", {}).items()):
            on = [tag for tag in tags if any(fnmatch.fnmatchcase(tag, pattern) for pattern in extra["on"])]
            if on and extra.get("mode") == "wheels":  # a source-mode layer clones from git hosts: not here
                extra["on"] = on
                extras += [f"{tag}-{extra['suffix']}" for tag in on]
            else:
                del doc["extra"][name]
        defaults = doc["defaults"]
        defaults["platform"] = self.platform
        defaults["python"] = "3.13"  # Debian trixie has no 3.12: the twin's one deviation
        defaults["cuda_image"] = twin_ref.replace(TWIN_CUDA, "{cuda}")
        # the twin's flavors are named like NVIDIA's: factory-twin/cuda:<cuda>-<flavor>-<arch>
        defaults["runtime_cuda_image"] = runtime_ref.replace(TWIN_CUDA, "{cuda}").replace("-base-", "-{flavor}-")
        defaults["ship_on"] = self.ship_on
        # FlashInfer's own index cannot be reached from here (only the package index can): no jit-cache
        defaults["flashinfer_index_url"] = ""
        defaults["lock_dir"] = str((self.work / "locks").relative_to(REPO))
        for kind in ("base", "vllm"):
            name = defaults["repositories"][kind].rsplit("/", 1)[-1]
            defaults["repositories"][kind] = f"{REGISTRY}/e2e-{self.name}/{name}"
        self.bases = bases
        self.base_repository = str(defaults["repositories"]["base"])
        header = ("# Generated by scripts/e2e.py from matrix.toml for the CUDA twin; do not edit.\n")
        self.matrix.write_text(header + tomlkit.dumps(doc), encoding="utf-8")
        return bases + tags + extras

    def check_image(self, image: dict, factory: list[str]) -> dict:
        ref = image["refs"][0]
        out = {"name": image["name"], "kind": image["kind"], "ref": ref, "status": image["status"],
               "build_seconds": image.get("duration_s"), "verified": image.get("verified"),
               "error": image.get("error")}
        if image["status"] not in ("pushed", "up to date"):
            return out
        saved = Path(image.get("verify_report") or "/nonexistent")
        if saved.is_file():  # verified by this release, before its measured labels were stamped
            out["verify"] = json.loads(saved.read_text())
            self.ok &= bool(out["verify"].get("ok"))
        else:  # up to date from an earlier run: verify it now
            verify = _run([*factory, "verify", ref, "--json", "--matrix", str(self.matrix)])
            out["verify"] = _json(verify.stdout)
            self.ok &= verify.returncode == 0
        # verify compared the installed environment with the image's lock: equal, or the image failed
        env = out["verify"].get("findings", {}).get("environment", {})
        off = [m["message"] for m in out["verify"].get("mismatches", []) if m.get("component") == "lock"]
        out["lock"] = {"distributions": len(env), "equal": bool(env) and not off, "differences": off}
        self.ok &= out["lock"]["equal"]
        local = _json(_run([*factory, "inspect", ref, "--json", "--matrix", str(self.matrix)]).stdout)
        remote = _run([*factory, "inspect", ref, "--remote", "--json", "--matrix", str(self.matrix)])
        out["inspect_remote"] = _json(remote.stdout)
        same = remote.returncode == 0 and out["inspect_remote"].get("labels") == local.get("labels")
        out["inspect_remote_matches_local"] = same
        self.ok &= same
        # the SBOM the release attached as an OCI referrer, read back from the registry
        sbom = _run([*factory, "inspect", ref, "--sbom", "--matrix", str(self.matrix)])
        doc = _json(sbom.stdout)
        components = doc.get("components", [])
        pypi = [c for c in components if str(c.get("purl", "")).startswith("pkg:pypi/")]
        out["sbom"] = {"ok": sbom.returncode == 0 and len(pypi) >= out["lock"]["distributions"] - 1,
                       "components": len(components), "pypi": len(pypi), "format": doc.get("bomFormat"),
                       "error": sbom.stderr.strip()[-300:] if sbom.returncode else None}
        self.ok &= out["sbom"]["ok"]
        if image["kind"] in ("vllm", "extra"):
            out["smoke"] = self.smoke(ref, factory)
        out["layers"] = _layers(ref, self.platform)
        out["floor"] = _floor(ref, self.platform)
        # uncompressed: the bytes of the image's files, measured in a container of it (the engine's own size
        # figure is the compressed content with containerd's image store)
        out["bytes"] = {"uncompressed": out["floor"].get("image_files"),
                        "compressed": sum(layer["compressed_bytes"] or 0 for layer in out["layers"]) or None}
        out["steps"] = _build_steps(REPO / (image.get("log") or ""))
        return out

    def release_step(self, title: str, names: list[str], report_name: str, factory: list[str],
                     ca: list[str]) -> dict:
        """`factory release` of `names`, then the checks of every image it reports."""
        report = self.work / f"{report_name}.json"
        release = self.step(title, [
            *factory, "release", *names, "--matrix", str(self.matrix), "--jobs", "1", *ca,
            "--log-dir", str(self.work / "logs"), "--report", str(report)])
        built = json.loads(report.read_text()) if report.exists() else {"images": []}
        checked = {image["name"] for image in self.images}
        for image in built["images"]:
            if image["name"] not in checked:  # a base the second release found up to date is checked already
                self.images.append(self.check_image(image, factory))
        return release

    def free_dev_bases(self) -> None:
        """Remove the dev bases from the engine (pushed, verified and checked: the registry holds them) and the
        build's package cache mounts."""
        refs = [f"{self.base_repository}:{name}" for name in self.bases]
        if refs:
            _run(["docker", "image", "rm", *refs])
        _run(["docker", "buildx", "prune", "--force", "--filter", "type=exec.cachemount"])
        print(f"e2e {self.name}: removed {', '.join(refs) or 'no image'} and the build's package cache", flush=True)

    def check_siblings(self) -> None:
        """A tag and its `<tag>alt` sibling share every layer but the last (Transformers): the sibling's other
        layers are the tag's, by registry digest, or a user pulling both would pull the environment twice."""
        by_name = {image["name"]: image for image in self.images}
        for name, image in by_name.items():
            tag = by_name.get(name.removesuffix("alt")) if name.endswith("alt") else None
            if tag is None:
                continue
            theirs = [layer.get("digest") for layer in tag.get("layers", [])]
            own = [layer.get("digest") for layer in image.get("layers", [])]
            shared = bool(own) and None not in own and own[:-1] == theirs[:-1] and own[-1] != theirs[-1]
            image["shares_all_but_transformers_with"] = tag["name"] if shared else None
            self.ok &= shared
            if not shared:
                print(f"e2e: {name} does not share every layer but its last with {tag['name']}", file=sys.stderr)

    def smoke(self, ref: str, factory: list[str]) -> dict:
        if not self.native:
            return {"run": False, "why": f"not run: {self.arch} runs under QEMU here, where `import torch` "
                                         "crashes (oneDNN reads MIDR_EL1); run it on the real platform"}
        done = _run([*factory, "smoke", ref, "--gpus", "none", "--json", "--matrix", str(self.matrix)])
        report = _json(done.stdout)
        checks = report.get("checks", [])
        failed = [c["name"] for c in checks if not c.get("ok")]
        # without a GPU the only acceptable failures are checks that need one
        needs_gpu = [c for c in failed if _needs_gpu(c)]
        wrong = [c for c in failed if c not in needs_gpu]
        self.ok &= not wrong and bool(checks)
        return {"run": True, "exit": done.returncode, "passed": sum(bool(c.get("ok") and not c.get("skipped"))
                                                                      for c in checks),
                "skipped": sum(bool(c.get("skipped")) for c in checks), "failed_needing_gpu": needs_gpu,
                "failed": wrong, "checks": checks}

    # --- the report ---------------------------------------------------------------------------------------

    def write(self, started: str) -> bool:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        data = {"arch": self.arch, "platform": self.platform, "native": self.native, "ship_on": self.ship_on,
                "started": started,
                "finished": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "ok": self.ok,
                "host": {"cpus": os.cpu_count(), "machine": host_platform.machine()},
                "steps": self.steps, "images": self.images}
        (self.report_dir / f"{self.name}.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        (self.report_dir / f"{self.name}.md").write_text(_markdown(data), encoding="utf-8")
        print(f"\ne2e {self.name}: {'PASSED' if self.ok else 'FAILED'}; report {self.report_dir}/{self.name}.md")
        return self.ok

    def clean(self) -> None:
        """Remove what the run made, keeping the twin: the images, the build cache, the registry's copies."""
        self.forget()
        self.collect_garbage()
        _run(["docker", "buildx", "prune", "--all", "--force"])
        print(f"e2e {self.name}: cleaned up the images, the build cache and the registry's e2e-{self.name} copies")

    def forget(self, *, local: bool = True) -> None:
        """Untag what this arch's runs published in the local registry (through its API: the blobs stay, so a
        later push stays consistent) and, with `local`, remove the images from the engine. The build cache
        stays."""
        listed = _run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).stdout.split()
        refs = [ref for ref in listed if ref.startswith(f"{REGISTRY}/e2e-{self.name}/")]
        if refs and local:
            _run(["docker", "image", "rm", "--force", *refs])
        _untag_registry(f"e2e-{self.name}/")

    def collect_garbage(self) -> None:
        """Free the registry's disk: garbage collection needs the registry stopped (its blob cache would
        otherwise claim deleted blobs), so it is stopped, collected and started again by the engine script."""
        state = Path(os.environ.get("FACTORY_ENGINE_STATE", "/tmp/spark-image-factory-engine"))
        pid_file = state / "pids" / "registry.pid"
        if not pid_file.is_file():
            return  # not ours to stop
        pid = int(pid_file.read_text().strip() or 0)
        try:
            os.kill(pid, 15)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except (ProcessLookupError, ValueError):
            pass
        _run(["docker-registry", "garbage-collect", "--delete-untagged", str(state / "registry" / "config.yml")])
        _run(["bash", "scripts/engine.sh", "start"])


def _untag_registry(prefix: str) -> None:
    """Delete every manifest of the local registry's repositories under `prefix` (DELETE by digest)."""
    import httpx

    accept = ", ".join(("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json",
                        "application/vnd.docker.distribution.manifest.v2+json"))
    with httpx.Client(base_url=f"http://{REGISTRY}/v2/", timeout=30) as client:
        repositories = client.get("_catalog", params={"n": 1000}).raise_for_status().json()["repositories"] or []
        for repo in (r for r in repositories if r.startswith(prefix)):
            tags = client.get(f"{repo}/tags/list").raise_for_status().json().get("tags") or []
            digests = {client.head(f"{repo}/manifests/{tag}", headers={"Accept": accept}).raise_for_status()
                       .headers["Docker-Content-Digest"] for tag in tags}
            for digest in digests:
                client.delete(f"{repo}/manifests/{digest}").raise_for_status()
            left = client.get(f"{repo}/tags/list").json().get("tags")
            if left:
                raise RuntimeError(f"the registry still lists {repo}:{', '.join(left)} after deleting them")


# --- helpers ------------------------------------------------------------------------------------------------


def _host_arch() -> str:
    machine = host_platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def _json(text: str) -> dict:
    try:
        return json.loads(text)
    except ValueError:
        start = text.find("{")
        try:
            return json.loads(text[start:]) if start >= 0 else {}
        except ValueError:
            return {"unparsed": text[-2000:]}


def _needs_gpu(name: str) -> bool:
    needs = ("gpu_visible", "cuda_available", "gpu_arch", "sdpa", "matmul", "triton:vector_add", "nccl:allreduce")
    return name in needs or name.startswith("sdpa:")


def _nothing_built(report: Path) -> str | None:
    data = json.loads(report.read_text())
    built = [i["name"] for i in data["images"] if i["status"] not in ("up to date",)]
    return f"rebuilt or re-pushed {', '.join(built)}" if built else None


def _layers(ref: str, platform: str) -> list[dict]:
    """Each layer: what made it, bytes in the engine (uncompressed), bytes in the registry (compressed)."""
    history = _run(["docker", "history", "--no-trunc", "--format", "{{json .}}", ref]).stdout.splitlines()
    entries = [json.loads(line) for line in history if line.strip()]
    entries.reverse()  # oldest first, like the manifest's layers
    sized = [e for e in entries if e.get("Size") not in ("0B", "0")]
    compressed: list[int] = []
    digests: list[str] = []
    try:
        from factory.adapters.registry import RegistryClient

        with RegistryClient(allow_http=True) as client:
            manifest = client.manifest(ref, platform)
        compressed = [int(layer.get("size", 0)) for layer in manifest.document.get("layers", [])]
        digests = [str(layer.get("digest", "")) for layer in manifest.document.get("layers", [])]
    except Exception as error:  # the report says it, the run goes on
        compressed = []
        print(f"e2e: could not read the manifest of {ref}: {error}", file=sys.stderr)
    out = []
    paired = len(compressed) == len(sized)
    for i, entry in enumerate(sized):
        out.append({"created_by": entry.get("CreatedBy", "")[:300], "size": entry.get("Size"),
                    "compressed_bytes": compressed[i] if paired else None,
                    "digest": digests[i] if paired else None})
    if compressed and len(compressed) != len(sized):
        out.append({"created_by": "(registry layers do not pair with history entries)", "size": "",
                    "compressed_bytes": sum(compressed)})
    return out


#: Run in the image: the bytes of its whole file system (uncompressed), of its site-packages, then of the
#: libraries outside it under /usr/local that libtorch_cuda.so loads (a source-built torch's cuBLAS, ..., NCCL;
#: none for torch's wheels).
_FLOOR = r"""
du -sxb / | cut -f1
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
du -sb "$site" | cut -f1
ldd "$site/torch/lib/libtorch_cuda.so" | awk '$3 ~ /^\/usr\/local\// {print $3}' > /tmp/libs
xargs -r readlink -f < /tmp/libs | sort -u | xargs -r du -cb | tail -n 1 | cut -f1
"""


def _floor(ref: str, platform: str) -> dict:
    """What the image cannot do without: its installed Python packages and the CUDA/NCCL libraries outside
    them that torch loads."""
    done = _run(["docker", "run", "--rm", "--platform", platform, "--network", "none", "--entrypoint", "/bin/sh",
                 ref, "-c", _FLOOR])
    numbers = [int(n) for n in done.stdout.split() if n.isdigit()]
    if done.returncode or len(numbers) < 2:
        return {"bytes": None, "error": (done.stderr or done.stdout).strip()[-300:]}
    files, site, libs = numbers[0], numbers[1], (numbers[2] if len(numbers) > 2 else 0)
    return {"bytes": site + libs, "site_packages": site, "libraries": libs, "image_files": files}


_STEP = re.compile(r"^#(\d+) (\[[^\]]+\] .*)$")
_DONE = re.compile(r"^#(\d+) DONE ([\d.]+)s$")


def _build_steps(log: Path) -> list[dict]:
    """Build steps with their times, from the BuildKit log of the build (empty when nothing was built)."""
    if not log.is_file():
        return []
    names: dict[str, str] = {}
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if (m := _STEP.match(line.strip())) and "[internal]" not in m[2]:
            names.setdefault(m[1], m[2][:160])
        elif (m := _DONE.match(line.strip())) and m[1] in names:
            out.append({"step": names.pop(m[1]), "seconds": float(m[2])})
    return [s for s in out if s["seconds"] >= 0.5]


def _gb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def _markdown(data: dict) -> str:
    lines = [f"# End-to-end on the CUDA twin: {data['platform']} "
             f"({'native' if data['native'] else 'under QEMU'})", "",
             f"Generated by `scripts/e2e.py --arch {data['arch']}` (`make e2e`); started {data['started']}, "
             f"finished {data['finished']}, on {data['host']['cpus']} CPUs ({data['host']['machine']}). "
             f"Result: **{'PASSED' if data['ok'] else 'FAILED'}**.", "",
             "| step | result | seconds |", "|---|---|---|"]
    for s in data["steps"]:
        lines.append(f"| {s['step']} | {'ok' if s['ok'] else 'FAILED: ' + (s['problem'] or '')} | {s['seconds']} |")
    for image in data["images"]:
        lines += ["", f"## {image['name']} ({image['kind']}): {image['status']}", "",
                  f"`{image['ref']}`; build {image.get('build_seconds') or 0:.0f} s; "
                  f"verify {'clean' if image.get('verify', {}).get('ok') else 'FAILED'}; "
                  f"`inspect --remote` equals the local labels: {image.get('inspect_remote_matches_local')}"]
        if "shares_all_but_transformers_with" in image:
            shared = image["shares_all_but_transformers_with"]
            said = f"every one but Transformers, with {shared}" if shared else "NOT every one but Transformers"
            lines += ["", f"Layers shared with its tag: {said}"]
        sbom = image.get("sbom")
        if sbom:
            lines += ["", f"SBOM read back from the registry (`inspect --sbom`): {sbom['format']}, "
                          f"{sbom['components']} components ({sbom['pypi']} Python packages): "
                          f"{'ok' if sbom['ok'] else 'FAILED ' + (sbom['error'] or '')}"]
        lock = image.get("lock")
        if lock:
            lines += ["", f"Python environment: {lock['distributions']} distributions, "
                          f"{'exactly the lock' if lock['equal'] else 'NOT the lock'}"
                          + "".join(f"; {d}" for d in lock["differences"][:10])]
        verify = image.get("verify", {})
        if verify:
            lines += ["", "Measured from the image's files:", "", "| component | found | where |", "|---|---|---|"]
            found = verify.get("findings", {})
            for c, v in found.get("components", {}).items():
                lines.append(f"| {c} | {v} | `{found.get('locations', {}).get(c, '')}` |")
            for k, v in verify.get("measured_labels", {}).items():
                lines.append(f"| {k} | {v or '(none)'} | stamped label |")
            for m in verify.get("mismatches", []):
                lines.append(f"| MISMATCH | {m.get('message')} | |")
        smoke = image.get("smoke")
        if smoke:
            if smoke.get("run"):
                lines += ["", f"Smoke without a GPU: {smoke['passed']} passed, {smoke['skipped']} skipped "
                              f"(need a GPU), failed: {', '.join(smoke['failed']) or 'none'}"
                              + (f"; failed only for want of a GPU: {', '.join(smoke['failed_needing_gpu'])}"
                                 if smoke["failed_needing_gpu"] else "")]
            else:
                lines += ["", f"Smoke: {smoke['why']}"]
        size, floor = image.get("bytes") or {}, image.get("floor") or {}
        if size.get("uncompressed"):
            ratio = (f"; {size['uncompressed'] / floor['bytes']:.2f}x its floor {_gb(floor['bytes'])} "
                     f"(site-packages {_gb(floor['site_packages'])}, libraries outside it {_gb(floor['libraries'])})"
                     if floor.get("bytes") else f"; floor not measured: {floor.get('error')}")
            lines += ["", f"Size: {_gb(size['uncompressed'])} uncompressed, {_gb(size.get('compressed'))} "
                          f"compressed{ratio}"]
        layers = image.get("layers", [])
        if layers:
            total = sum(layer["compressed_bytes"] or 0 for layer in layers)
            lines += ["", f"Layers (compressed total {_gb(total)}):", "", "| size | compressed | made by |",
                      "|---|---|---|"]
            for layer in layers:
                made = layer["created_by"].replace("|", "\\|").replace("\n", " ")[:140]
                lines.append(f"| {layer['size']} | {_gb(layer['compressed_bytes'])} | `{made}` |")
        steps = image.get("steps", [])
        if steps:
            lines += ["", "Build steps over 0.5 s:", "", "| seconds | step |", "|---|---|"]
            lines += [f"| {s['seconds']:.1f} | `{s['step'].replace('|', '/')[:140]}` |" for s in steps]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
