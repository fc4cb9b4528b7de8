"""Authentication to a registry: answering its ``WWW-Authenticate`` challenge with a ``Bearer`` token from its
token service (anonymous, with a user name and password, or with an identity token) or with ``Basic``
credentials, and the sentence that says why access was denied.

Where credentials come from is :mod:`factory.adapters.registry.credentials`; the requests themselves are
the client's, handed in as an :data:`Exchange`, so this module does not depend on the client.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from factory.adapters.http import host_port, redacting_logger
from factory.adapters.registry.documents import error_detail, json_object, load_json, string_field
from factory.adapters.registry.errors import MalformedDocument, RegistryAccessDenied, RegistryError
from factory.adapters.registry.reference import Reference

if TYPE_CHECKING:
    import httpx

    from factory.adapters.http import Answer
    from factory.adapters.registry.credentials import Credential, CredentialProvider

__all__ = ["Authenticator", "Exchange", "parse_challenges"]

log = redacting_logger(__name__)

#: A token service's answer is read up to this many bytes.
_MAX_TOKEN = 1024 * 1024


class Exchange(Protocol):
    """One request of the client (retries, deadline, size cap), its errors already the registry's."""

    def __call__(self, method: str, url: str | httpx.URL, *, target: str, headers: Mapping[str, str] | None = None,
                 data: Mapping[str, str] | None = None, max_bytes: int = ...) -> Answer: ...


_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_challenges(values: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """Parse ``WWW-Authenticate`` header values into ``[(scheme, {param: value})]``.

    Schemes and parameter names are lower-cased; quoted values are unescaped.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    for value in values:
        i, n = 0, len(value)
        current: dict[str, str] | None = None
        while i < n:
            while i < n and value[i] in " \t,":
                i += 1
            m = _TOKEN_CHARS.match(value, i)
            if not m:
                break
            token, i = m.group(), m.end()
            j = i
            while j < n and value[j] in " \t":
                j += 1
            if current is not None and j < n and value[j] == "=" and value[j + 1:j + 2] != "=":
                j += 1
                while j < n and value[j] in " \t":
                    j += 1
                if j < n and value[j] == '"':
                    j += 1
                    chars = []
                    while j < n and value[j] != '"':
                        if value[j] == "\\" and j + 1 < n:
                            j += 1
                        chars.append(value[j])
                        j += 1
                    param = "".join(chars)
                    i = j + 1
                else:
                    k = j
                    while k < n and value[k] not in ", \t":
                        k += 1
                    param, i = value[j:k], k
                current[token.lower()] = param
            else:
                current = {}
                challenges.append((token.lower(), current))
    return challenges



class Authenticator:
    """The Authorization headers of one client: per (registry, scope) after a Bearer challenge, per registry
    after a Basic one; tokens per (realm, service, scopes); credentials per registry, asked once."""

    def __init__(self, credentials: CredentialProvider | None, exchange: Exchange) -> None:
        self._credentials = credentials
        self._exchange = exchange
        self._creds: dict[str, Credential | None] = {}
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._auth: dict[tuple[str, str], tuple[str, str]] = {}  # (registry, scope) -> (Authorization, who)

    def credential(self, registry: str) -> Credential | None:
        if registry not in self._creds:
            self._creds[registry] = self._credentials(registry) if self._credentials else None
        return self._creds[registry]

    def cached(self, registry: str, scope: str) -> tuple[str, str] | None:
        """(Authorization header, who it speaks for) already known for ``scope``, or None."""
        return self._auth.get((registry, scope)) or self._auth.get((registry, "*"))

    def unauthenticated(self, registry: str) -> str:
        """Who a request without an Authorization header is, in a message."""
        return "anonymous" if self.credential(registry) is None else "an unauthenticated request"

    def drop(self, registry: str, scope: str) -> None:
        """Forget the Authorization header of ``scope`` (the registry refused it)."""
        self._auth.pop((registry, scope), None)
        self._auth.pop((registry, "*"), None)

    def expire(self, registry: str, scope: str) -> None:
        """Forget the header and the tokens of ``scope`` (expired or revoked): start again from the challenge."""
        self.drop(registry, scope)
        self._tokens = {k: v for k, v in self._tokens.items() if scope not in k[2].split()}

    def answer(self, ref: Reference, scope: str, challenges: Mapping[str, Mapping[str, str]]) -> tuple[str, str]:
        """(Authorization header, who) answering the 401's ``challenges`` (scheme -> parameters) for ``scope``."""
        if "bearer" in challenges:
            authorization, who = self._bearer(ref, scope, challenges["bearer"])
            self._auth[(ref.registry, scope)] = (authorization, who)
        elif "basic" in challenges:
            authorization, who = self._basic(ref)
            self._auth[(ref.registry, "*")] = (authorization, who)
        else:
            offered = ", ".join(sorted(challenges)) or "none"
            raise RegistryAccessDenied(
                f"registry {ref.registry} refused access to {ref.repository}: 401 Unauthorized with no Bearer or "
                f"Basic challenge (offered: {offered})")
        return authorization, who

    def denied(self, ref: Reference, resp: Answer, who: str, *, rejected: bool = False,
                actions: str = "pull") -> RegistryAccessDenied:
        detail = error_detail(resp.body)
        status = f"{resp.status} {resp.reason}".strip()
        why = f"{status}" + (f", {detail}" if detail else "")
        if who == "anonymous":
            advice = f"; no credentials are configured for {ref.registry} (docker login {ref.registry})"
        elif rejected:
            advice = f"; the credentials of {who} were rejected"
        else:
            advice = f"; {who} is not allowed to {'push to' if 'push' in actions else 'pull'} it"
        challenge = dict(parse_challenges(resp.headers.get_list("www-authenticate"))).get("bearer", {})
        if challenge.get("error") == "insufficient_scope":
            advice += ", or the repository does not exist"
        return RegistryAccessDenied(f"registry {ref.registry} refused access to {ref.repository}: {why}{advice}")

    def _basic(self, ref: Reference) -> tuple[str, str]:
        cred = self.credential(ref.registry)
        if cred is None or not cred.username or not cred.secret:
            raise RegistryAccessDenied(
                f"registry {ref.registry} refused access to {ref.repository}: it asks for a user name and password "
                f"(Basic) and no credentials are configured for {ref.registry}")
        token = base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode("ascii")
        return f"Basic {token}", f"user {cred.username!r}"

    def _bearer(self, ref: Reference, scope: str, challenge: Mapping[str, str]) -> tuple[str, str]:
        import httpx

        realm = challenge.get("realm", "")
        if not realm:
            raise RegistryAccessDenied(
                f"registry {ref.registry} refused access to {ref.repository}: its Bearer challenge names no realm")
        service = challenge.get("service", "")
        scopes = challenge.get("scope", "").split() or [scope]
        if scope not in scopes:
            scopes.append(scope)
        cred = self.credential(ref.registry)
        who = "anonymous" if cred is None else (f"user {cred.username!r}" if cred.username
                                                and cred.username != "<token>" else "the identity token")
        cache_key = (realm, service, " ".join(sorted(scopes)))
        token = self._tokens.get(cache_key)
        if token is None:
            try:
                realm_url = httpx.URL(realm)
            except httpx.InvalidURL:
                raise RegistryError(f"registry {ref.registry} names an invalid token realm {realm!r}") from None
            if realm_url.scheme not in ("http", "https") or not realm_url.host:
                raise RegistryError(f"registry {ref.registry} names an invalid token realm {realm!r}")
            target = f"the token service of registry {ref.registry}"
            params: list[tuple[str, str | int | float | bool | None]] = [("service", service)] if service else []
            if cred is not None and cred.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": cred.identity_token,
                        "client_id": "spark-image-factory", "scope": " ".join(scopes)}
                if service:
                    form["service"] = service
                resp = self._exchange("POST", realm_url, target=target, data=form, max_bytes=_MAX_TOKEN)
            else:
                params += [("scope", s) for s in scopes]
                headers = {}
                if cred is not None and cred.username and cred.secret:
                    params.append(("account", cred.username))
                    basic = base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode("ascii")
                    headers["Authorization"] = f"Basic {basic}"
                resp = self._exchange("GET", realm_url.copy_merge_params(params), target=target,
                                      headers=headers, max_bytes=_MAX_TOKEN)
            if resp.status in (401, 403):
                detail = error_detail(resp.body)
                why = f"{resp.status} {resp.reason}" + (f", {detail}" if detail else "")
                if cred is None:
                    msg = f"its token service {host_port(realm_url)} requires credentials ({why}) and none are " \
                          f"configured for {ref.registry}"
                else:
                    msg = f"its token service {host_port(realm_url)} rejected the credentials of {who} ({why})"
                raise RegistryAccessDenied(f"registry {ref.registry} refused access to {ref.repository}: {msg}")
            if not 200 <= resp.status < 300:
                raise RegistryError(f"{target} answered {resp.status} {resp.reason} to a token request for "
                                    f"{ref.repository}")
            what = f"the answer of {target} to a token request for {ref.repository}"
            doc = json_object(load_json(resp.body, what), what)
            token = string_field(doc, "token", what) or string_field(doc, "access_token", what)
            if not token:
                raise MalformedDocument(f"{target} answered a token request for {ref.repository} without a token")
            self._tokens[cache_key] = token
            log.debug("got a %s token for %s from %s", who, " ".join(scopes), realm_url.host)
        return f"Bearer {token}", who

    # -- API ---------------------------------------------------------------------------------
