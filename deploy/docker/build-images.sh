#!/usr/bin/env bash
# Build the ICN node image (icn/node:dev) from PREBUILT release binaries.
# This script never compiles Rust: run `cargo build --release --workspace` first.
#
# Usage: deploy/docker/build-images.sh
#
# Environment:
#   CARGO_TARGET_DIR  where cargo put its output         (default <repo>/target)
#   ICN_IMAGE         tag of the image to build          (default icn/node:dev)
#   BASE_IMAGE        base image for the Dockerfile      (default icn/base:bookworm-2, built
#                     locally by build-base-image.sh without registry access; any other
#                     value, e.g. debian:bookworm-slim, is used as is and may be pulled)
#   ICN_STRIP_DEBUG   1 (default) strips debug info from the staged copies of the binaries
#                     (symbols are kept for backtraces); 0 copies them untouched
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
cd "$REPO_ROOT"

IMAGE="${ICN_IMAGE:-icn/node:dev}"
BASE_IMAGE="${BASE_IMAGE:-icn/base:bookworm-2}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO_ROOT/$TARGET_DIR" ;; esac
RELEASE_DIR="$TARGET_DIR/release"
BINARIES=(icn-netd icn-gossip icn-ledger icn-compute icn-gateway icnctl)

log() { echo "build-images: $*"; }

# --- the prebuilt binaries ----------------------------------------------------
missing=()
for b in "${BINARIES[@]}"; do
    [ -x "$RELEASE_DIR/$b" ] || missing+=("$b")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "build-images: missing release binaries in $RELEASE_DIR: ${missing[*]}" >&2
    echo "build-images: build them first with:  cargo build --release --workspace" >&2
    exit 1
fi
# Warn (only) when sources are newer than the binaries: this script never rebuilds Rust.
oldest="$(ls -1tr "${BINARIES[@]/#/$RELEASE_DIR/}" | head -n1)"
newer="$(find crates services icnctl proto Cargo.toml Cargo.lock -newer "$oldest" \
            \( -name '*.rs' -o -name '*.proto' -o -name 'Cargo.*' \) -print 2>/dev/null | head -n3 || true)"
if [ -n "$newer" ]; then
    log "WARNING: sources changed after $oldest was built (e.g. $(echo "$newer" | tr '\n' ' '));"
    log "WARNING: the image will contain the OLD binaries; rerun 'cargo build --release --workspace' if that matters"
fi

# --- the base image -----------------------------------------------------------
if [ "$BASE_IMAGE" = "icn/base:bookworm-2" ]; then
    "$HERE/build-base-image.sh"
else
    log "using base image $BASE_IMAGE (not building icn/base:bookworm-2)"
fi

# --- build context: Dockerfile + bin/ -----------------------------------------
CONTEXT="$(mktemp -d "${TMPDIR:-/tmp}/icn-image.XXXXXX")"
trap 'rm -rf "$CONTEXT"' EXIT
mkdir -p "$CONTEXT/bin"
cp "$HERE/Dockerfile" "$CONTEXT/Dockerfile"
for b in "${BINARIES[@]}"; do
    cp -L "$RELEASE_DIR/$b" "$CONTEXT/bin/$b"
done
if [ "${ICN_STRIP_DEBUG:-1}" = "1" ] && command -v strip >/dev/null 2>&1; then
    for b in "${BINARIES[@]}"; do
        strip --strip-debug "$CONTEXT/bin/$b" 2>/dev/null || log "note: could not strip $b, copied as is"
    done
fi
chmod 0755 "$CONTEXT"/bin/*
log "staged binaries from $RELEASE_DIR ($(du -sh "$CONTEXT/bin" | cut -f1)):"
ls -l "$CONTEXT/bin" | sed 's/^/  /'

# --- docker build -------------------------------------------------------------
# Without the buildx plugin (Debian's docker.io), use the classic builder explicitly.
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi
OLD_ID="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
log "docker build -t $IMAGE --build-arg BASE_IMAGE=$BASE_IMAGE"
start=$(date +%s)
docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" "$CONTEXT"
NEW_ID="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
    if docker image rm "$OLD_ID" >/dev/null 2>&1; then log "removed previous image ${OLD_ID#sha256:}"; fi
fi

# --- sanity check: every shared library resolves inside the image -------------
log "checking shared libraries inside $IMAGE"
if ! docker run --rm --entrypoint /bin/sh "$IMAGE" -c '
        rc=0
        for b in '"${BINARIES[*]}"'; do
            out="$(ldd /usr/local/bin/$b 2>&1)" || true
            if echo "$out" | grep -q "not found"; then
                echo "  $b: $(echo "$out" | grep "not found" | tr -s " \t" " " | tr "\n" ";")"; rc=1
            fi
        done
        [ "$(id -u):$(id -g)" = "10001:10001" ] || { echo "  running as $(id -u):$(id -g), expected 10001:10001"; rc=1; }
        exit $rc'; then
    echo "build-images: $IMAGE is missing shared libraries (see above); add the Debian package to PACKAGES in build-base-image.sh" >&2
    exit 1
fi

log "done: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' "$IMAGE") in $(( $(date +%s) - start ))s"
