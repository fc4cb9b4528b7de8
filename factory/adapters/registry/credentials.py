"""Registry credentials from the Docker client's config, as ``docker login`` leaves them.

The config is ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.  For a
registry host, in the order the Docker CLI uses:

1. ``credHelpers[host]`` names a helper: ``docker-credential-<helper> get`` is run with the
   server URL on stdin and answers ``{"Username": ..., "Secret": ...}`` (a ``Username`` of
   ``<token>`` means the secret is an identity token);
2. else ``credsStore`` names the helper for every registry;
3. else (or when the helper knows nothing) ``auths[host]``: ``auth`` (base64 of
   ``user:password``), ``username``/``password``, and ``identitytoken``.

Keys of ``auths`` and ``credHelpers`` match on their host (a scheme and path are ignored).
The default registry's credentials are filed under the legacy key ``docker login`` uses for
it, :data:`factory.adapters.registry.reference.DOCKER_HUB_AUTH_KEY`, for that registry and its aliases.

Secrets are never logged, and the ``repr`` of a :class:`Credential` hides them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.adapters.http import redacting_logger
from factory.adapters.registry.errors import RegistryError
from factory.adapters.registry.reference import DOCKER_HUB_ALIASES, DOCKER_HUB_AUTH_KEY

__all__ = [
    "Credential",
    "CredentialProvider",
    "CredentialsError",
    "DockerCredentials",
    "docker_config_path",
    "docker_credentials",
    "server_key",
    "static_credentials",
]

log = redacting_logger(__name__)

#: What the helpers print when they hold nothing for a server.
_NOT_FOUND = "credentials not found in native keychain"
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_IDENTITY_TOKEN_USER = "<token>"


class CredentialsError(RegistryError):
    """The Docker config or a credential helper could not be read (a :class:`RegistryError`)."""


@dataclass(frozen=True, repr=False)
class Credential:
    """A user name with a password (``secret``) or an identity (refresh) token.

    ``source`` says where it came from (never the secret itself).  ``repr``/``str`` hide the secrets.
    """

    username: str = ""
    secret: str = ""
    identity_token: str = ""
    source: str = ""

    def __repr__(self) -> str:
        parts = [f"username={self.username!r}"]
        if self.secret:
            parts.append("secret=<hidden>")
        if self.identity_token:
            parts.append("identity_token=<hidden>")
        if self.source:
            parts.append(f"source={self.source!r}")
        return f"Credential({', '.join(parts)})"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool((self.username and self.secret) or self.identity_token)


#: Gives the credential for a registry host (``host[:port]``), or ``None``.
CredentialProvider = Callable[[str], "Credential | None"]


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    folder = os.environ.get("DOCKER_CONFIG")
    return (Path(folder) if folder else Path.home() / ".docker") / "config.json"


def _key_host(key: str) -> str:
    """The host of an ``auths``/``credHelpers`` key: ``https://host/v1/`` -> ``host``."""
    key = key.strip().lower()
    if "://" in key:
        key = key.split("://", 1)[1]
    return key.split("/", 1)[0]


def _is_hub(host: str) -> bool:
    return host.lower() in DOCKER_HUB_ALIASES


def server_key(registry: str) -> str:
    """The server URL ``docker login`` files ``registry``'s credentials under."""
    return DOCKER_HUB_AUTH_KEY if _is_hub(registry) else registry


def _lookup(table: Mapping[str, Any], registry: str) -> Any:
    """``table``'s entry for ``registry``: an exact key first, then a key with the same host."""
    wanted = server_key(registry)
    if wanted in table:
        return table[wanted]
    hub = _is_hub(registry)
    host = registry.lower()
    for key, value in table.items():
        key_host = _key_host(key)
        if key_host == host or (hub and _is_hub(key_host)):
            return value
    return None


def static_credentials(table: Mapping[str, Credential]) -> CredentialProvider:
    """A provider answering from ``{registry host: Credential}`` (default-registry aliases match)."""

    def provide(registry: str) -> Credential | None:
        found = _lookup(table, registry)
        return found if isinstance(found, Credential) else None

    return provide


class DockerCredentials:
    """Credentials from a Docker config file; call it with a registry host.

    ``config_path``: the file (default: :func:`docker_config_path` at each lookup, so
    ``DOCKER_CONFIG`` set later is honoured).  ``helper_timeout``: seconds a credential
    helper may take.
    """

    def __init__(self, config_path: str | os.PathLike[str] | None = None, *, helper_timeout: float = 30.0) -> None:
        self.config_path = Path(config_path) if config_path is not None else None
        self.helper_timeout = helper_timeout

    def __repr__(self) -> str:
        return f"<DockerCredentials {self.config_path or docker_config_path()}>"

    def __call__(self, registry: str) -> Credential | None:
        return self.get(registry)

    def load(self) -> dict[str, Any]:
        """The parsed config; ``{}`` when there is no file."""
        path = self.config_path or docker_config_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CredentialsError(f"cannot read the Docker config {path}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            # the message names the position only, never the file's text
            raise CredentialsError(f"the Docker config {path} is not valid JSON (line {exc.lineno})") from None
        if not isinstance(doc, dict):
            raise CredentialsError(f"the Docker config {path} is not a JSON object")
        return doc

    def get(self, registry: str) -> Credential | None:
        """The credential for ``registry`` (``host[:port]``), or ``None`` when there is none."""
        path = self.config_path or docker_config_path()
        doc = self.load()
        helpers: Mapping[str, Any] = doc["credHelpers"] if isinstance(doc.get("credHelpers"), dict) else {}
        helper = _lookup(helpers, registry)
        origin = "credHelpers"
        if helper is not None and not isinstance(helper, str):
            raise CredentialsError(f"the credHelpers entry for {registry} in {path} is not a helper name (a string)")
        if not helper and isinstance(doc.get("credsStore"), str) and doc["credsStore"]:
            helper, origin = doc["credsStore"], "credsStore"
        if helper:
            cred = run_helper(str(helper), server_key(registry), timeout=self.helper_timeout,
                              origin=f"{origin} in {path}")
            if cred:
                log.debug("credentials for %s from docker-credential-%s (user %r)", registry, helper, cred.username)
                return cred
        auths: Mapping[str, Any] = doc["auths"] if isinstance(doc.get("auths"), dict) else {}
        entry = _lookup(auths, registry)
        if not isinstance(entry, dict):
            return None
        cred = _from_auth_entry(entry, f"auths in {path}", registry)
        if cred:
            log.debug("credentials for %s from %s (user %r)", registry, path, cred.username)
            return cred
        return None


def _text(doc: Mapping[str, Any], key: str, what: str) -> str:
    """A string field of a JSON object (missing or null: ''); any other type is a CredentialsError that never
    shows the value."""
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CredentialsError(f"{what} has a {key!r} that is not a string")
    return value


def _from_auth_entry(entry: Mapping[str, Any], source: str, registry: str) -> Credential | None:
    what = f"the auth entry for {registry} ({source})"
    username = _text(entry, "username", what)
    secret = _text(entry, "password", what)
    encoded = entry.get("auth")
    if encoded is not None and not isinstance(encoded, str):
        raise CredentialsError(f"{what} has an 'auth' that is not a string")
    if isinstance(encoded, str) and encoded.strip():
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"the auth entry for {registry} ({source}) is not base64 of user:password") from None
        if ":" not in decoded:
            raise CredentialsError(f"the auth entry for {registry} ({source}) is not base64 of user:password")
        username, secret = decoded.split(":", 1)
    token = _text(entry, "identitytoken", what)
    cred = Credential(username=username, secret=secret, identity_token=token, source=source)
    return cred if cred else None


def run_helper(helper: str, server_url: str, *, timeout: float = 30.0, origin: str = "") -> Credential | None:
    """Ask ``docker-credential-<helper> get`` for ``server_url``; ``None`` when it holds nothing."""
    if not _HELPER_NAME.fullmatch(helper):
        raise CredentialsError(f"invalid credential helper name {helper!r}" + (f" ({origin})" if origin else ""))
    program = f"docker-credential-{helper}"
    executable = shutil.which(program)
    if executable is None:
        raise CredentialsError(f"{program}" + (f" (named by {origin})" if origin else "") + " is not on PATH")
    try:
        done = subprocess.run([executable, "get"], input=server_url, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"{program} took more than {timeout:g} s to answer for {server_url}") from None
    except OSError as exc:
        raise CredentialsError(f"cannot run {program}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        said = (done.stdout.strip() or done.stderr.strip()).splitlines()
        if said and _NOT_FOUND in said[0].lower():
            return None
        # a helper that failed prints an error, not credentials; still show one short line only
        reason = said[0][:200] if said else f"exit status {done.returncode}"
        raise CredentialsError(f"{program} failed for {server_url}: {reason}")
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        raise CredentialsError(f"{program} answered for {server_url} with something other than JSON") from None
    if not isinstance(doc, dict):
        raise CredentialsError(f"{program} answered for {server_url} with something other than a JSON object")
    what = f"the answer of {program} for {server_url}"
    username, secret = _text(doc, "Username", what), _text(doc, "Secret", what)
    if not secret:
        return None
    source = program + (f" ({origin})" if origin else "")
    if username == _IDENTITY_TOKEN_USER:
        return Credential(username=username, identity_token=secret, source=source)
    return Credential(username=username, secret=secret, source=source)


def docker_credentials(registry: str) -> Credential | None:
    """The default provider: the Docker config named by ``DOCKER_CONFIG`` (or ``~/.docker``) at call time."""
    return DockerCredentials().get(registry)
