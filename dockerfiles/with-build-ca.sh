#!/bin/sh
# with-build-ca COMMAND...: run COMMAND trusting one more CA for downloads, when the build was given one.
#
# A builder behind a TLS-inspecting proxy (corporate networks, CI sandboxes) needs the proxy's CA to reach
# the package index. `factory build --build-ca FILE` passes it as the BuildKit secret `build-ca`, mounted
# only for the RUN steps that download: it never enters a layer, the image config or the build args. Without
# the secret this runs COMMAND unchanged.
set -eu
secret=${FACTORY_BUILD_CA_SECRET:-/run/secrets/build-ca}
if [ ! -s "$secret" ]; then
  exec "$@"
fi
bundle=$(mktemp)
trap 'rm -f "$bundle"' EXIT
cat /etc/ssl/certs/ca-certificates.crt "$secret" >"$bundle" 2>/dev/null || cat "$secret" >"$bundle"
export SSL_CERT_FILE="$bundle" REQUESTS_CA_BUNDLE="$bundle" PIP_CERT="$bundle" CURL_CA_BUNDLE="$bundle" \
  GIT_SSL_CAINFO="$bundle"
"$@"
