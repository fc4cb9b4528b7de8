"""A wheel's core metadata (``METADATA``): parsing it, and the requirements it declares for the images'
target (Linux on aarch64 or x86_64, one CPython, no extras)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from factory.adapters.index.errors import UpstreamError

__all__ = [
    "WheelMetadata",
    "applicable_requirements",
    "is_cuda_requirement",
    "parse_metadata",
    "requirement_for",
    "target_environment",
]


@dataclass(frozen=True)
class WheelMetadata:
    """The parts of a wheel's core metadata the factory cares about."""

    name: str
    version: str
    requires_dist: tuple[str, ...]
    requires_python: str | None
    #: The wheel the metadata was read from.
    source_file: str

    def requirement(self, name: str, *, machine: str = "aarch64",
                    python_version: str = "3.12") -> Requirement | None:
        return requirement_for(self, name, machine=machine, python_version=python_version)



def target_environment(machine: str = "aarch64", python_version: str = "3.12") -> dict[str, str]:
    """Marker environment of the images: Linux, CPython ``python_version``, no extras."""
    if machine not in ("aarch64", "x86_64"):
        raise ValueError(f"machine must be 'aarch64' or 'x86_64', not {machine!r}")
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python_version}.0",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python_version}.0",
        "python_version": python_version,
        "sys_platform": "linux",
        "extra": "",
    }


def _applies(req: Requirement, env: dict[str, str], source_file: str = "a wheel") -> bool:
    if req.marker is None:
        return True
    try:
        return req.marker.evaluate(env)
    except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker, ValueError, TypeError) as exc:
        raise UpstreamError(f"the metadata of {source_file} declares {str(req)[:200]!r}, whose marker cannot be "
                            f"evaluated ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})"
                            ) from None


def applicable_requirements(metadata: WheelMetadata, env: dict[str, str]) -> Iterable[Requirement]:
    """The Requires-Dist of ``metadata`` that apply in ``env``; a line that is not a requirement, or whose
    marker cannot be evaluated, is an UpstreamError (skipping it could hide a pin)."""
    for line in metadata.requires_dist:
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise UpstreamError(f"the metadata of {metadata.source_file} has a Requires-Dist that is not a "
                                f"requirement: {line[:200]!r} ({str(exc).splitlines()[0][:200]})") from None
        if _applies(req, env, metadata.source_file):
            yield req


def requirement_for(metadata: WheelMetadata, name: str, *, machine: str = "aarch64",
                    python_version: str = "3.12") -> Requirement | None:
    """The requirement on ``name`` that ``metadata`` declares for the target, or None.

    Markers are evaluated for Linux on ``machine`` (``aarch64`` or ``x86_64``) with CPython
    ``python_version`` and no extras requested; the first applicable line wins. An arbitrary-equality
    pin (``===``) on something that is not a PEP 440 version is an UpstreamError: the factory pins versions.
    """
    env = target_environment(machine, python_version)
    wanted = canonicalize_name(name)
    for req in applicable_requirements(metadata, env):
        if canonicalize_name(req.name) == wanted:
            for spec in req.specifier:
                if spec.operator == "===":
                    try:
                        Version(spec.version)
                    except InvalidVersion:
                        raise UpstreamError(
                            f"the metadata of {metadata.source_file} pins {str(req)[:200]!r}: "
                            f"{spec.version[:100]!r} is not a version") from None
            return req
    return None


def parse_metadata(data: bytes, source_file: str) -> WheelMetadata:
    """Parse a core metadata (``METADATA``) document -- an RFC 822 style header block."""
    from email.parser import HeaderParser

    text = data.decode("utf-8", errors="replace")
    msg = HeaderParser().parsestr(text)

    def one(key: str) -> str | None:
        value = msg.get(key)
        return " ".join(str(value).split()) if value is not None else None

    name, version = one("Name"), one("Version")
    if not name or not version:
        raise UpstreamError(f"the metadata of {source_file} has no Name or Version field")
    requires = tuple(" ".join(str(v).split()) for v in (msg.get_all("Requires-Dist") or ()))
    return WheelMetadata(name=name, version=version, requires_dist=requires,
                         requires_python=one("Requires-Python"), source_file=source_file)


def is_cuda_requirement(req: Requirement) -> bool:
    """A requirement on NVIDIA's CUDA packages (``nvidia-*``, ``cuda-toolkit``): what makes torch a CUDA build."""
    name = canonicalize_name(req.name)
    return name.startswith("nvidia-") or name == "cuda-toolkit"
