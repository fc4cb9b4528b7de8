"""Propose the matrix entries a new vLLM release needs, from what its wheels (and torch's) declare.

`propose` reads the release's wheel METADATA and the package index, and returns a `Proposal`: one
image per Transformers major the release allows (`<vllm>-t4`, `<vllm>-t5`) with the newest allowed
Transformers of that major, vLLM's FlashInfer pin, the newest Triton torch's own METADATA allows, the
base whose torch/torchvision/torchaudio equal vLLM's pins (or a new one), and the matrix's
`vllm-<ver>/...` rules for the release. Everything follows upstream exactly, so no waiver is needed.

`Proposal.write` inserts the new tables into matrix.toml with tomlkit: comments and the order of the
file survive; new bases go after the last base, new images after the last image, new rules after the
last rule of their kind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from factory.core.errors import InputError
from factory.core.matrix import LoadedMatrix, Rule, as_dict, parse, version_of
from factory.usecases.upstream import (
    TorchTriton,
    VllmFacts,
    spec_text,
    torch_triton,
    triton_rule,
    vllm_facts,
    vllm_rules,
)

if TYPE_CHECKING:
    import tomlkit
    import tomlkit.container
    import tomlkit.items

    from factory.adapters.index import PackageIndex, UpstreamError, WheelMetadata
    from factory.core.resolve import Resolution

_PINS = ("torch", "torchvision", "torchaudio")


# -- the proposal ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposedBase:
    """A base for the release: an existing one (`new` False) or one to add."""

    name: str
    mode: str
    cuda: str
    nccl: str
    torch: str
    torchvision: str
    torchaudio: str
    new: bool
    #: key -> why it has its value (written as an inline comment)
    comments: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "new": self.new, "mode": self.mode, "cuda": self.cuda, "nccl": self.nccl,
                "torch": self.torch, "torchvision": self.torchvision, "torchaudio": self.torchaudio,
                "comments": dict(self.comments)}


@dataclass(frozen=True)
class ProposedImage:
    tag: str
    base: str
    mode: str
    vllm: str
    triton: str
    flashinfer: str
    transformers: str
    vllm_released: date | None
    comments: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "base": self.base, "mode": self.mode, "vllm": self.vllm, "triton": self.triton,
                "flashinfer": self.flashinfer, "transformers": self.transformers,
                "vllm_released": self.vllm_released.isoformat() if self.vllm_released else None,
                "comments": dict(self.comments)}


@dataclass(frozen=True)
class Proposal:
    """The entries a vLLM release needs; `toml_text()` shows them, `write(path)` adds them to a matrix."""

    vllm: str
    base: ProposedBase
    images: tuple[ProposedImage, ...]
    rules: tuple[Rule, ...]
    #: where each value came from, in words
    notes: tuple[str, ...] = ()
    #: tags of this release the matrix already has (left alone)
    existing_tags: tuple[str, ...] = ()

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(image.tag for image in self.images)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vllm": self.vllm,
            "base": self.base.as_dict(),
            "images": [image.as_dict() for image in self.images],
            "rules": [as_dict(rule, exclude_defaults=True) for rule in self.rules],
            "notes": list(self.notes),
            "existing_tags": list(self.existing_tags),
        }

    # -- TOML ------------------------------------------------------------------------------------

    def toml_text(self) -> str:
        """The new tables as TOML (what `write` inserts)."""
        import tomlkit

        doc = tomlkit.document()
        if self.base.new:
            bases = tomlkit.table(is_super_table=True)
            bases.append(self.base.name, _base_table(self.base))
            doc.append("base", bases)
        if self.images:
            images = tomlkit.table(is_super_table=True)
            for image in self.images:
                images.append(image.tag, _image_table(image))
            doc.append("image", images)
        if self.rules:
            rules = tomlkit.aot()
            for rule in self.rules:
                rules.append(_rule_table(rule))
            doc.append("rule", rules)
        return tomlkit.dumps(doc)

    def apply(self, text: str) -> str:
        """`text` (a matrix.toml) with the new tables inserted; comments and order stay as they were."""
        import tomlkit

        doc = tomlkit.parse(text)
        if self.base.new:
            _append_table(doc, "base", self.base.name, _base_table(self.base))
        for image in self.images:
            _append_table(doc, "image", image.tag, _image_table(image))
        for rule in self.rules:
            _insert_rule(doc, _rule_table(rule), kind=rule.id.split("-", 1)[0])
        return tomlkit.dumps(doc)

    def resolution(self, loaded: LoadedMatrix) -> Resolution:
        """What `factory check` would say about `loaded`'s file with the proposal written into it."""
        from factory.core.resolve import resolve

        try:
            text = loaded.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{loaded.path}: cannot read the matrix: {exc}") from None
        matrix = parse(self.apply(text), loaded.path)
        return resolve(LoadedMatrix(matrix=matrix, path=loaded.path))

    def write(self, matrix_path: str | Path) -> Path:
        """Insert the new tables into the matrix file (atomically); the result is validated first."""
        path = Path(matrix_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{path}: cannot read the matrix: {exc}") from None
        new_text = self.apply(text)
        parse(new_text, path)  # an InputError here leaves the file untouched
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(new_text)
            if path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o7777)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


# -- building it -----------------------------------------------------------------------------------


def propose(loaded: LoadedMatrix, vllm_version: str, index: PackageIndex) -> Proposal:
    """The matrix entries vLLM `vllm_version` needs, from its wheel METADATA and the index.

    InputError: not a version, not on the index, or every tag it needs is already in the matrix.
    `factory.adapters.index.UpstreamError` (WorkFailed): the index failed, or what upstream declares cannot be
    turned into entries (no exact torch pins, no release satisfying a requirement).
    """
    from factory.adapters.index import NotFound

    matrix = loaded.matrix
    try:
        Version(vllm_version)
    except InvalidVersion:
        raise InputError(f"{vllm_version!r} is not a vLLM version (e.g. 0.33.0)") from None
    python = matrix.defaults.python
    try:
        facts = vllm_facts(index, vllm_version, python=python)
    except NotFound as exc:
        raise InputError(f"vLLM {vllm_version} is not on {index.index_url} ({exc})") from None
    notes: list[str] = []
    if not facts.has_aarch64_wheel:
        notes.append(f"vLLM {vllm_version} has no aarch64 wheel: read its {facts.machine} wheel's METADATA")

    pins = {name: _exact_pin(facts, name) for name in _PINS}
    notes.append(f"vLLM {vllm_version} pins " + ", ".join(f"{n}=={v}" for n, v in pins.items()))
    flashinfer = _flashinfer(index, facts)
    notes.append(f"flashinfer {flashinfer}: vLLM {vllm_version} declares {facts.requires['flashinfer']}")
    majors = _transformers_by_major(index, facts)
    declared = facts.requires["transformers"]
    spec = spec_text(declared.specifier) if declared is not None else ""
    notes.append(f"transformers: vLLM {vllm_version} declares transformers{spec}; "
                 + "; ".join(f"t{m}: newest {m}.x allowed is {v}" for m, v in majors.items()))

    triton = torch_triton(index, pins["torch"], python=python)
    if triton.requirement is None:
        raise _fail(f"torch {pins['torch']}'s wheels declare no Triton requirement: choose a Triton by hand")
    triton_version = _newest(index, "triton", triton.requirement.specifier)
    notes.append(f"triton {triton_version}: newest release inside triton{spec_text(triton.requirement.specifier)} "
                 f"({triton.declared})")

    torch_cuda = bool(index.torch_aarch64_is_cuda(pins["torch"]))
    mode = "wheels" if torch_cuda and facts.has_aarch64_wheel else "source"
    notes.append(f"mode {mode}: vLLM {vllm_version} {'has an' if facts.has_aarch64_wheel else 'has no'} aarch64 "
                 f"wheel; PyPI's torch {pins['torch']} aarch64 wheel is "
                 f"{'a CUDA build' if torch_cuda else 'CPU-only'}")

    base = _existing_base(loaded, pins, "wheels" if torch_cuda else "source")
    if base is None:
        base = _new_base(loaded, index, pins, torch_cuda, python)
        notes.append(f"new base {base.name} ({base.mode}): no base has torch/torchvision/torchaudio "
                     + "/".join(pins.values()))
    else:
        notes.append(f"base {base.name}: its torch/torchvision/torchaudio equal vLLM's pins")

    released = facts.released.date() if facts.released else None
    existing = tuple(tag for tag, image in matrix.image.items() if image.vllm == vllm_version)
    images = []
    for major, transformers in majors.items():
        tag = f"{vllm_version}-t{major}"
        if tag in matrix.image:
            continue
        comments = {
            "triton": f"newest inside torch {pins['torch']}'s triton{spec_text(triton.requirement.specifier)}",
            "transformers": f"newest {major}.x inside vLLM {vllm_version}'s transformers{spec}",
        }
        if mode == "wheels":
            comments["mode"] = "vLLM, FlashInfer and Triton install from aarch64 wheels"
        images.append(ProposedImage(tag=tag, base=base.name, mode=mode, vllm=vllm_version, triton=triton_version,
                                    flashinfer=flashinfer, transformers=transformers, vllm_released=released,
                                    comments=comments))
    if not images:
        raise InputError(f"{loaded.path}: vLLM {vllm_version} is already in the matrix "
                         f"({', '.join(existing) or 'no tag'}); nothing to propose")

    rules = _new_rules(loaded, index, facts, triton)
    return Proposal(vllm=vllm_version, base=base, images=tuple(images), rules=tuple(rules), notes=tuple(notes),
                    existing_tags=existing)


def _fail(message: str) -> UpstreamError:
    from factory.adapters.index import UpstreamError

    return UpstreamError(message)


def _exact_pin(facts: VllmFacts, component: str) -> str:
    req = facts.requires[component]
    specs = list(req.specifier) if req is not None else []
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    declared = f"declares {req}" if req is not None else f"declares no {component} requirement"
    raise _fail(f"vLLM {facts.version} {declared}, not an exact pin: choose the {component} of its base by hand")


def _candidates(index: PackageIndex, project: str, specifier: SpecifierSet) -> list[Version]:
    exact = any(s.operator in ("==", "===") for s in specifier)
    out = []
    for release in index.releases(project):
        v = release.parsed_version
        if release.yanked or (v.is_prerelease and not exact):
            continue
        if specifier.contains(v, prereleases=True):
            out.append(v)
    return sorted(out)


def _newest(index: PackageIndex, project: str, specifier: SpecifierSet) -> str:
    found = _candidates(index, project, specifier)
    if not found:
        raise _fail(f"no release of {project} on {index.index_url} satisfies {project}{spec_text(specifier)}")
    return str(found[-1])


def _flashinfer(index: PackageIndex, facts: VllmFacts) -> str:
    req = facts.requires["flashinfer"]
    if req is None or not str(req.specifier):
        raise _fail(f"vLLM {facts.version} declares no flashinfer-python version: choose one by hand")
    return _newest(index, "flashinfer-python", req.specifier)


def _transformers_by_major(index: PackageIndex, facts: VllmFacts) -> dict[int, str]:
    """Major -> the newest final release of that major inside vLLM's Transformers range."""
    req = facts.requires["transformers"]
    if req is None:
        raise _fail(f"vLLM {facts.version} declares no transformers requirement: choose the variants by hand")
    newest: dict[int, Version] = {}
    for v in _candidates(index, "transformers", req.specifier):
        if not v.is_prerelease:
            newest[v.major] = max(v, newest.get(v.major, v))
    if not newest:
        raise _fail(f"no final transformers release on {index.index_url} satisfies {req}")
    return {major: str(newest[major]) for major in sorted(newest)}


def _existing_base(loaded: LoadedMatrix, pins: dict[str, str], mode: str) -> ProposedBase | None:
    """The base whose torch/torchvision/torchaudio equal the pins: same mode first, then the last defined."""
    matches = [(name, base) for name, base in loaded.matrix.base.items()
               if all(version_of(n, getattr(base, n)) == Version(v) for n, v in pins.items())]
    if not matches:
        return None
    name, base = max(enumerate(matches), key=lambda item: (item[1][1].mode == mode, item[0]))[1]
    return ProposedBase(name=name, mode=base.mode, cuda=base.cuda, nccl=base.nccl, torch=base.torch,
                        torchvision=base.torchvision, torchaudio=base.torchaudio, new=False)


def _new_base(loaded: LoadedMatrix, index: PackageIndex, pins: dict[str, str], torch_cuda: bool,
              python: str) -> ProposedBase:
    torch = pins["torch"]
    comments: dict[str, str] = {}
    if torch_cuda:
        mode = "wheels"
        cuda, cuda_why, nccl, nccl_why = _torch_wheel_cuda(index, torch, python)
        cv = Version(cuda)
        comments["mode"] = (f"PyPI's torch {torch} aarch64 wheel is a CUDA {cv.major}.{cv.minor} build: "
                            "no compile needed")
        comments["cuda"] = cuda_why
        comments["nccl"] = nccl_why
    else:
        mode = "source"
        sources = [(name, base) for name, base in loaded.matrix.base.items() if base.mode == "source"]
        if not sources:
            raise InputError(f"{loaded.path}: PyPI's torch {torch} aarch64 wheel is CPU-only, so its base "
                             "builds torch from source, and no source base exists to copy CUDA and NCCL from")
        name, newest = max(enumerate(sources), key=lambda item: (version_of("torch", item[1][1].torch), item[0]))[1]
        cuda, nccl = newest.cuda, newest.nccl
        comments["cuda"] = f"CUDA and NCCL as in {name}, the newest source base"
    cv = version_of("cuda", cuda)
    suffix = f"cu{cv.major}{cv.minor}"
    name, variant = f"{torch}-{suffix}", 1
    while name in loaded.matrix.base:
        variant += 1
        name = f"{torch}-v{variant}-{suffix}"
    return ProposedBase(name=name, mode=mode, cuda=cuda, nccl=nccl, new=True, comments=comments,
                        **{n: pins[n] for n in _PINS})


def _linux_requirements(meta: WheelMetadata, python: str) -> list[Requirement]:
    from factory.adapters.index import target_environment

    env = target_environment("aarch64", python)
    out = []
    for line in meta.requires_dist:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate(env):
            out.append(req)
    return out


def _pin_of(req: Requirement) -> str | None:
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def _torch_wheel_cuda(index: PackageIndex, torch: str, python: str) -> tuple[str, str, str, str]:
    """CUDA and NCCL of PyPI's aarch64 torch wheel, from the CUDA packages its METADATA pins."""
    from factory.adapters.index import select_wheel

    release = index.release("torch", torch)
    wheel = select_wheel([f for f in release.files if f.is_aarch64_linux], "linux/arm64", python_version=python)
    if wheel is None:
        raise _fail(f"torch {torch} has no aarch64 wheel on {index.index_url}")
    requirements = _linux_requirements(index.metadata_of(wheel), python)
    cuda: str | None = None
    nccl: str | None = None
    cuda_why = nccl_why = ""
    for req in requirements:
        name, pin = canonicalize_name(req.name), _pin_of(req)
        if pin is None:
            continue
        if name == "cuda-toolkit" and cuda is None:
            cuda, cuda_why = pin, f"torch {torch}'s aarch64 wheel requires cuda-toolkit=={pin}"
        elif name.startswith("nvidia-cuda-runtime") and cuda is None:
            v = Version(pin)
            cuda = f"{v.major}.{v.minor}.0"
            cuda_why = (f"CUDA {v.major}.{v.minor} of torch {torch}'s {req.name}=={pin}; check the patch release")
        elif name.startswith("nvidia-nccl-cu") and nccl is None:
            nccl, nccl_why = pin, f"the {req.name} wheel torch {torch} pins"
    if cuda is None or nccl is None:
        missing = " and ".join(x for x, v in (("CUDA", cuda), ("NCCL", nccl)) if v is None)
        raise _fail(f"torch {torch}'s aarch64 wheel ({wheel.filename}) pins no {missing} package: "
                    "write its base by hand")
    return cuda, cuda_why, nccl, nccl_why


def _project_page(index: PackageIndex, project: str, version: str) -> str | None:
    if urlparse(index.index_url).hostname in ("pypi.org", "test.pypi.org"):
        host = urlparse(index.index_url).hostname
        return f"https://{host}/project/{project}/{version}/"
    return None


def _new_rules(loaded: LoadedMatrix, index: PackageIndex, facts: VllmFacts, triton: TorchTriton) -> list[Rule]:
    """The matrix's shipped-rules convention for the release: `vllm-<ver>/...` and `torch-<ver>/triton`."""
    have = {rule.id for rule in loaded.matrix.rule}
    rules = []
    page = _project_page(index, "vllm", facts.version)
    for rule in vllm_rules(facts, prefix=""):
        if rule.id not in have:
            rules.append(replace(rule, source=page) if page else rule)
    triton_pin = triton_rule(triton, prefix="")
    if triton_pin is not None and triton_pin.id not in have:
        page = _project_page(index, "torch", triton.torch)
        rules.append(replace(triton_pin, source=page) if page else triton_pin)
    return rules


# -- tomlkit plumbing ------------------------------------------------------------------------------


def _value(value: Any, comment: str | None = None) -> tomlkit.items.Item:
    import tomlkit

    item: tomlkit.items.Item = tomlkit.item(value)
    if comment:
        item.comment(comment)
        item.trivia.comment_ws = "  "
    return item


def _base_table(base: ProposedBase) -> tomlkit.items.Table:
    import tomlkit

    table = tomlkit.table()
    if base.mode != "source":
        table.add("mode", _value(base.mode, base.comments.get("mode")))
    for key in ("cuda", "nccl", "torch", "torchvision", "torchaudio"):
        table.add(key, _value(getattr(base, key), base.comments.get(key)))
    return table


def _image_table(image: ProposedImage) -> tomlkit.items.Table:
    import tomlkit

    table = tomlkit.table()
    table.add("base", _value(image.base))
    if image.mode != "source":
        table.add("mode", _value(image.mode, image.comments.get("mode")))
    for key in ("vllm", "triton", "flashinfer", "transformers"):
        table.add(key, _value(getattr(image, key), image.comments.get(key)))
    if image.vllm_released is not None:
        table.add("vllm_released", _value(image.vllm_released))
    return table


def _inline(mapping: dict[str, str]) -> tomlkit.items.InlineTable:
    """`{ key = "value" }`, spaced the way matrix.toml writes inline tables."""
    import tomlkit

    pairs = ", ".join(f"{key} = {tomlkit.string(value).as_string()}" for key, value in mapping.items())
    table: tomlkit.items.InlineTable = tomlkit.parse(f"x = {{ {pairs} }}\n")["x"]
    return table


def _rule_table(rule: Rule) -> tomlkit.items.Table:
    import tomlkit

    table = tomlkit.table()
    table.add("id", rule.id)
    if rule.severity != "error":
        table.add("severity", rule.severity)
    table.add("when", _inline(rule.when))
    table.add("require", _inline(rule.require))
    table.add("reason", rule.reason)
    table.add("source", rule.source)
    return table


def _split_trailing(container: tomlkit.container.Container) -> tuple[tomlkit.container.Container,
                                                                      list[tomlkit.items.Item],
                                                                      list[tomlkit.items.Item]]:
    """Take the comments and blank lines that end a table (recursing into its last sub-table) off it.

    tomlkit keeps what follows a table's last key -- blank lines, then maybe the comment block that
    introduces the next section -- inside that table. Returns the container they were taken from, the
    leading blank lines and the rest.
    """
    from tomlkit.items import AoT, Comment, Table, Whitespace

    body = container.body
    if body and body[-1][0] is not None:
        last = body[-1][1]
        if isinstance(last, Table):
            return _split_trailing(last.value)
        if isinstance(last, AoT) and last.body:
            return _split_trailing(last.body[-1].value)
        return container, [], []
    items: list[tomlkit.items.Item] = []
    while body and body[-1][0] is None and isinstance(body[-1][1], Comment | Whitespace):
        items.insert(0, body.pop()[1])
    blank: list[tomlkit.items.Item] = []
    while items and isinstance(items[0], Whitespace):
        blank.append(items.pop(0))
    return container, blank, items


def _move_trailing(previous: tomlkit.container.Container, new: tomlkit.items.Table) -> None:
    """Put `new` where `previous` ends: `previous` keeps a blank line, `new` takes over what followed it."""
    import tomlkit

    target, blank, rest = _split_trailing(previous)
    separator = blank or [tomlkit.ws("\n")]
    for item in separator:
        target.body.append((None, item))
    # a comment that opened the next section stays apart from the new table's keys
    for item in [*(tomlkit.ws(w.as_string()) for w in (separator if rest else blank)), *rest]:
        new.value.body.append((None, item))


def _append_table(doc: tomlkit.TOMLDocument, section: str, name: str, table: tomlkit.items.Table) -> None:
    import tomlkit

    if section not in doc:
        holder = tomlkit.table(is_super_table=True)
        doc.append(section, holder)
        holder.append(name, table)
        return
    holder = doc[section]
    if holder.value.body:
        _move_trailing(holder.value, table)
    holder.append(name, table)


def _insert_rule(doc: tomlkit.TOMLDocument, table: tomlkit.items.Table, *, kind: str) -> None:
    """Insert a [[rule]] after the last rule whose id starts like it (`vllm-`, `torch-`), else the last."""
    import tomlkit

    if "rule" not in doc:
        rules = tomlkit.aot()
        rules.append(table)
        doc.append("rule", rules)
        return
    rules = doc["rule"]
    same = [i for i, rule in enumerate(rules) if str(rule.get("id", "")).startswith(f"{kind}-")]
    after = same[-1] if same else len(rules) - 1
    _move_trailing(rules[after].value, table)
    rules.insert(after + 1, table)
