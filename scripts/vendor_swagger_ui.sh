#!/usr/bin/env bash
# Refresh the Swagger UI files served at /docs (app/ops/swagger_ui/) from the npm package
# `swagger-ui-dist`, the Swagger UI project's own build. Pin VERSION and INTEGRITY together:
# `npm view swagger-ui-dist@VERSION dist.integrity` prints the integrity of a release.
set -euo pipefail

VERSION=5.35.0
INTEGRITY=sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==
FILES=(LICENSE NOTICE swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css
       favicon-16x16.png favicon-32x32.png)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dest=app/ops/swagger_ui
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "swagger-ui-dist@${VERSION}" >/dev/null)
tarball="$work/swagger-ui-dist-${VERSION}.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ "$actual" != "$INTEGRITY" ]]; then
    echo "integrity mismatch for swagger-ui-dist ${VERSION}: ${actual}" >&2
    exit 1
fi
tar xzf "$tarball" -C "$work"
mkdir -p "$dest"
for file in "${FILES[@]}"; do
    cp "$work/package/$file" "$dest/$file"
done
echo "$VERSION" >"$dest/VERSION"
echo "Swagger UI ${VERSION} vendored into ${dest}"
