"""The grammar of matrix values: versions, names, git refs, URLs, Docker repositories, templates, paths.

Plain functions that return the text or raise ValueError with a message for the maintainer; the pydantic
schema (factory/core/schema.py) runs them as validators, and the CLI checks flag values with them. Nothing here
imports pydantic, so the plan path can use them without paying for it.
"""

from __future__ import annotations

import re
import string
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version

from factory.core.matrix import PACKAGE_REVISION
from factory.core.redact import has_userinfo, redact

#: A PEP 440 version as written: letters, digits and . ! + _ - only (no whitespace, no newline: the text is
#: pasted into build args, git refs and labels verbatim).
_VERSION_TEXT = re.compile(r"[0-9A-Za-z][0-9A-Za-z.!+_-]{0,63}")


def check_version(text: str) -> str:
    if not _VERSION_TEXT.fullmatch(text):
        raise ValueError(f"{text!r} is not a version: letters, digits and . ! + _ - only, no spaces "
                         "(PEP 440, e.g. 2.10.0 or 5.0.0rc3)")
    try:
        Version(PACKAGE_REVISION.sub("", text))
    except InvalidVersion:
        raise ValueError(f"{text!r} is not a version (PEP 440, e.g. 2.10.0 or 5.0.0rc3)") from None
    return text



#: Names of bases, vLLM tags and extra layers become Docker tags, file names under labels/, bake targets and
#: CI job values: Docker's tag grammar, nothing else (no `$(...)`, no `/`, no `..`, no spaces). Unwaivable.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
NAME_RULE = "a name is Docker's tag grammar: 1 to 128 of A-Z a-z 0-9 _ . - and does not start with . or -"


def check_name(name: str) -> str:
    """`name` when it is a valid image name (Docker's tag grammar), else ValueError."""
    if not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid name: {NAME_RULE}")
    return name


def check_ref(text: str) -> str:
    """A git tag, branch or commit: never empty, never an option (`-...`), nothing git or a shell would read
    as something else (`git check-ref-format`'s rules)."""
    if not text:
        raise ValueError("a git ref cannot be empty")
    if text.startswith("-"):
        raise ValueError(f"{text!r} starts with '-': git would read it as an option")
    if (len(text) > 255 or re.search(r"[\x00-\x20\x7f~^:?*\[\\]", text) or ".." in text or "@{" in text
            or "//" in text or text.startswith("/") or text.endswith(("/", ".", ".lock")) or text == "@"):
        raise ValueError(f"{text!r} is not a git ref (a tag, branch or commit: no spaces, no ~^:?*[\\, no '..')")
    return text



CREDENTIALS_HINT = ("credentials never go into a URL here: a private index or repository gets them from "
                    "~/.netrc or a BuildKit secret")


def shown_url(url: str) -> str:
    """A URL for a message: redacted, and not shown at all when it still has an `@` (a malformed user-info)."""
    clean = redact(url)
    return "(value not shown: it may carry a credential)" if "@" in clean.replace("***@", "") else repr(clean)


def check_url(text: str, *, schemes: tuple[str, ...] = ("https", "http"), what: str = "an http(s) URL",
              userinfo: bool = False) -> str:
    """A URL without whitespace or control characters, with a host, of one of `schemes`, and without user-info
    unless `userinfo` (a flag's URL, whose credentials the HTTP client splits off; never a matrix field)."""
    if has_userinfo(text) and not userinfo:
        raise ValueError(f"{shown_url(text)}: user-info (user:password@) in a URL is refused; {CREDENTIALS_HINT}")
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"{shown_url(text)} is not {what} (empty, or has whitespace or control characters)")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port or an unclosed IPv6 bracket
    except ValueError:
        raise ValueError(f"{shown_url(text)} is not {what} (it cannot be parsed)") from None
    if "@" in parts.netloc and not userinfo:
        raise ValueError(f"{shown_url(text)}: user-info (user:password@) in a URL is refused; {CREDENTIALS_HINT}")
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{shown_url(text)} is not {what}")
    return text


def check_index_url(text: str) -> str:
    return check_url(text, what="an http(s) URL of a package index")


def check_optional_index_url(text: str) -> str:
    return text if text == "" else check_index_url(text)


def check_web_url(text: str) -> str:
    return check_url(text, what="an http(s) URL")


def check_git_url(text: str) -> str:
    check_url(text, schemes=("https", "http", "git", "ssh"), what="a git URL (https://, http://, git://, ssh://)")
    if any(c in text for c in "@?#"):
        raise ValueError(f"{shown_url(text)}: a git URL here has no '@', '?' or '#' (pip reads `git+URL@ref`)")
    return text



_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                     r"(?::[0-9]{1,5})?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def check_repository(text: str) -> str:
    """A Docker repository: `[registry-host[:port]/]path`, path components lower-case (Docker's grammar)."""
    first, _, rest = text.partition("/")
    has_host = bool(rest) and ("." in first or ":" in first or first == "localhost")
    path = rest if has_host else text
    ok = (len(text) <= 255 and (not has_host or _DOMAIN.fullmatch(first))
          and all(_PATH_COMPONENT.fullmatch(part) for part in path.split("/")))
    if not ok:
        raise ValueError(f"{text!r} is not a Docker repository ([host[:port]/]name/name, the name lower-case: "
                         "a-z 0-9 and single . _ __ - between them)")
    return text



_NAMESPACE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)+")


def check_namespace(text: str) -> str:
    if not _NAMESPACE.fullmatch(text) or len(text) > 128:
        raise ValueError(f"{text!r} is not a reverse-DNS label namespace like dev.scitrera "
                         "(lower-case a-z 0-9 and -, at least two parts joined by .)")
    return text




def check_template(text: str, allowed: tuple[str, ...], what: str) -> str:
    """`text` when its only `{...}` fields are plain names from `allowed` (str.format would fail otherwise)."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid {what} template ({exc}; write a literal brace as {{{{ or }}}})") \
            from None
    for name, spec, conv in fields:
        if name not in allowed or spec or conv:
            fields_text = " and ".join("{" + a + "}" for a in allowed)
            raise ValueError(f"{text!r}: only {fields_text} can be filled in, not {{{name}}}")
    return text


_REFERENCE = re.compile(r"(?:[A-Za-z0-9.-]+(?::[0-9]{1,5})?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                        r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?")


def check_cuda_image(text: str) -> str:
    check_template(text, ("cuda", "ubuntu"), "cuda_image")
    sample = text.format(cuda="13.1.0", ubuntu="24.04")
    if not _REFERENCE.fullmatch(sample):
        raise ValueError(f"{text!r} is not an image reference like nvidia/cuda:{{cuda}}-devel-ubuntu{{ubuntu}} "
                         "(no digest: set the base's cuda_image_digest)")
    return text




def check_runtime_cuda_image(text: str) -> str:
    check_template(text, ("cuda", "ubuntu", "flavor"), "runtime_cuda_image")
    if not _REFERENCE.fullmatch(text.format(cuda="13.1.0", ubuntu="24.04", flavor="base")):
        raise ValueError(f"{text!r} is not an image reference like nvidia/cuda:{{cuda}}-{{flavor}}-ubuntu{{ubuntu}} "
                         "(no digest: set the base's runtime_cuda_image_digest)")
    return text





def check_relative_path(text: str) -> str:
    """A path relative to the matrix's folder that cannot leave it: not absolute, no `..`, `/` separators."""
    parts = text.split("/")
    if (not text or text.startswith("/") or "\\" in text or re.match(r"^[A-Za-z]:", text) or ".." in parts
            or any(not c.isprintable() for c in text)):
        raise ValueError(f"{text!r} is not a path inside the matrix's folder (relative, '/'-separated, no '..')")
    return text



