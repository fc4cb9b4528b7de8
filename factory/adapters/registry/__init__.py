"""The OCI registry adapter, by concern:

* :mod:`~factory.adapters.registry.reference` -- image references, parsed and normalised as Docker does;
* :mod:`~factory.adapters.registry.documents` -- indexes, manifests, configs, referrers: typed, shape-checked;
* :mod:`~factory.adapters.registry.credentials` -- credentials from the Docker config and credential helpers;
* :mod:`~factory.adapters.registry.auth` -- answering a registry's Bearer / Basic challenge;
* :mod:`~factory.adapters.registry.client` -- :class:`RegistryClient`: manifests, blobs, tags, referrers, pushes;
* :mod:`~factory.adapters.registry.errors` -- one error class per way it fails.

The names callers use are importable from here.
"""

from factory.adapters.registry.auth import parse_challenges
from factory.adapters.registry.client import DOCKER_CONFIG, RegistryClient
from factory.adapters.registry.credentials import (
    Credential,
    CredentialProvider,
    CredentialsError,
    DockerCredentials,
    docker_config_path,
    docker_credentials,
    server_key,
    static_credentials,
)
from factory.adapters.registry.documents import (
    CREATED,
    DEFAULT_PLATFORM,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    ResolvedManifest,
)
from factory.adapters.registry.errors import (
    BadDigest,
    InvalidArtifact,
    InvalidPlatform,
    InvalidReference,
    MalformedDocument,
    NotFound,
    PlainHTTPRefused,
    PlatformNotFound,
    RegistryAccessDenied,
    RegistryError,
    RegistryUnavailable,
    RegistryUnreachable,
)
from factory.adapters.registry.reference import (
    DEFAULT_REGISTRY,
    DOCKER_HUB_ALIASES,
    DOCKER_HUB_AUTH_KEY,
    Reference,
    is_loopback,
    parse_reference,
)

__all__ = [
    "CREATED",
    "DEFAULT_PLATFORM",
    "DEFAULT_REGISTRY",
    "DOCKER_CONFIG",
    "DOCKER_HUB_ALIASES",
    "DOCKER_HUB_AUTH_KEY",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "BadDigest",
    "Credential",
    "CredentialProvider",
    "CredentialsError",
    "DockerCredentials",
    "InvalidArtifact",
    "InvalidPlatform",
    "InvalidReference",
    "MalformedDocument",
    "NotFound",
    "PlainHTTPRefused",
    "PlatformNotFound",
    "Reference",
    "RegistryAccessDenied",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
    "RegistryUnreachable",
    "ResolvedManifest",
    "docker_config_path",
    "docker_credentials",
    "is_loopback",
    "parse_challenges",
    "parse_reference",
    "server_key",
    "static_credentials",
]
