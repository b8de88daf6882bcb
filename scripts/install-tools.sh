#!/usr/bin/env bash
# Installs every external tool the tests and benchmarks use, idempotently.
# Debian packages through apt; Go clients with `go install` at pinned versions,
# cached outside the repository in $NCR_TOOLS (default ~/.cache/ncr-trio/tools).
set -euo pipefail

NCR_TOOLS="${NCR_TOOLS:-$HOME/.cache/ncr-trio/tools}"
BIN="$NCR_TOOLS/bin"
mkdir -p "$BIN"

# Pinned versions (see ../shared/notes/stack-findings.md).
ORAS_VERSION=v1.3.3
HELM_VERSION=v3.21.4
COSIGN_VERSION=v2.6.4
CRANE_VERSION=v0.21.9
REGCTL_VERSION=v0.11.5
DISTRIBUTION_VERSION=v3.1.1
# An S3-compatible gateway over a local directory, for the S3 storage driver tests (tests/support/s3.py).
VERSITYGW_VERSION=v1.7.0
# The OCI conformance suite. Tag v1.1.1 (commit a139cc4) is not served by the Go module proxy
# reachable here (403 for that commit); the newest served version is pinned instead and run with
# OCI_VERSION=1.1, which tests the same v1.1 API with many more cases (sha512, sparse, nested indexes).
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111
# skopeo with sigstore signature verification (the `sigstoreSigned` policy), for tests/test_trust_skopeo.py:
# Debian's skopeo 1.9.3 is built with it stubbed out ("Debian-local change: sigstore disabled"). Installed
# as skopeo-sigstore beside Debian's skopeo, which every other test keeps using. The Go module proxy
# serves this exact version but no version list (so `go install mod@version` refuses), and its zip
# holds no vendor/ tree: built from the downloaded module with its dependencies from the proxy.
SKOPEO_SIGSTORE_VERSION=v1.16.1

log() { printf '[install-tools] %s\n' "$*" >&2; }

# chromium: tests/test_console.py drives it headless through Playwright (never `playwright install`).
# haproxy: tests/test_cluster.py and `make cluster` put it in front of three nodes with deploy/haproxy.cfg.
apt_packages=(skopeo podman docker-registry wrk curl uidmap fuse-overlayfs chromium haproxy)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<major>/bin.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  missing+=(postgresql)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v docker >/dev/null 2>&1; then
  log "docker CLI missing: installing Debian's docker.io for its client"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

# go install at a pinned version, only when the cached binary is not that version.
go_tool() {
  local name="$1" module="$2" version="$3"
  local stamp="$NCR_TOOLS/.$name.version"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  log "go install $module@$version"
  GOBIN="$BIN" CGO_ENABLED=0 go install "$module@$version"
  echo "$version" > "$stamp"
}

go_tool oras     oras.land/oras/cmd/oras                                 "$ORAS_VERSION"
go_tool crane    github.com/google/go-containerregistry/cmd/crane        "$CRANE_VERSION"
go_tool regctl   github.com/regclient/regclient/cmd/regctl               "$REGCTL_VERSION"
go_tool helm     helm.sh/helm/v3/cmd/helm                                "$HELM_VERSION"
go_tool cosign   github.com/sigstore/cosign/v2/cmd/cosign                "$COSIGN_VERSION"
go_tool versitygw github.com/versity/versitygw/cmd/versitygw           "$VERSITYGW_VERSION"
if [ ! -x "$BIN/registry-v3" ] || [ "$(cat "$NCR_TOOLS/.registry-v3.version" 2>/dev/null)" != "$DISTRIBUTION_VERSION" ]; then
  log "go install distribution registry $DISTRIBUTION_VERSION"
  tmp=$(mktemp -d)
  GOBIN="$tmp" CGO_ENABLED=0 go install "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION"
  mv "$tmp/registry" "$BIN/registry-v3"; rmdir "$tmp"
  echo "$DISTRIBUTION_VERSION" > "$NCR_TOOLS/.registry-v3.version"
fi

if [ ! -x "$BIN/conformance" ] || [ "$(cat "$NCR_TOOLS/.conformance.version" 2>/dev/null)" != "$CONFORMANCE_VERSION" ]; then
  log "building the OCI conformance suite $CONFORMANCE_VERSION"
  mod=github.com/opencontainers/distribution-spec/conformance
  dir=$(go mod download -json "$mod@$CONFORMANCE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  work=$(mktemp -d)
  cp -r "$dir/." "$work/"; chmod -R u+w "$work"
  (cd "$work" && go build -o "$BIN/conformance" .)
  rm -rf "$work"
  echo "$CONFORMANCE_VERSION" > "$NCR_TOOLS/.conformance.version"
fi

if [ ! -x "$BIN/skopeo-sigstore" ] || [ "$(cat "$NCR_TOOLS/.skopeo-sigstore.version" 2>/dev/null)" != "$SKOPEO_SIGSTORE_VERSION" ]; then
  log "building skopeo $SKOPEO_SIGSTORE_VERSION with sigstore as skopeo-sigstore"
  mod=github.com/containers/skopeo
  dir=$(go mod download -json "$mod@$SKOPEO_SIGSTORE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  work=$(mktemp -d)
  cp -r "$dir/." "$work/"; chmod -R u+w "$work"; rm -rf "$work/vendor"
  # No cgo: the btrfs and devicemapper graph drivers (C libraries) are left out; openpgp in Go, not gpgme.
  (cd "$work" && CGO_ENABLED=0 go build -mod=mod -o "$BIN/skopeo-sigstore" \
     -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" ./cmd/skopeo)
  rm -rf "$work"
  echo "$SKOPEO_SIGSTORE_VERSION" > "$NCR_TOOLS/.skopeo-sigstore.version"
fi

log "tools ready in $BIN"
