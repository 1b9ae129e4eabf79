#!/usr/bin/env bash
# Build a minimal Debian bookworm base image for ICN WITHOUT pulling from any
# container registry: debootstrap a minbase root filesystem from the Debian
# package mirror, slim it down, and `docker import` it as icn/base:bookworm-2.
#
# Usage: deploy/docker/build-base-image.sh [--force] [--tag IMAGE]
#
# Environment:
#   ICN_BASE_IMAGE     image tag to produce        (default icn/base:bookworm-2)
#   ICN_DEBIAN_MIRROR  Debian mirror URL           (default: the one apt uses here,
#                                                   else http://deb.debian.org/debian)
#   ICN_DEBIAN_SECURITY_MIRROR  security mirror URL (same detection; default
#                                                   http://deb.debian.org/debian-security)
#   ICN_DEBIAN_SUITE   Debian suite                (default bookworm)
#   ICN_BASE_NO_UPGRADE=1  skip applying <suite>-updates / -security upgrades
#
# Idempotent: does nothing if the image already exists, unless --force.
set -euo pipefail

IMAGE="${ICN_BASE_IMAGE:-icn/base:bookworm-2}"
SUITE="${ICN_DEBIAN_SUITE:-bookworm}"
FORCE=0
# Runtime libraries our binaries link against (glibc is in minbase already), and coturn,
# the STUN/TURN server of docker-compose.yml's `nat` profile. Bump the tag's number when
# this list changes, so that machines holding the older image build the new one.
PACKAGES="ca-certificates,libstdc++6,libgcc-s1,coturn"

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --tag) IMAGE="$2"; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "build-base-image: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "build-base-image: $*"; }

if ! command -v docker >/dev/null 2>&1; then
    echo "build-base-image: docker is not installed" >&2
    exit 1
fi

if [ "$FORCE" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE already exists, skipping (use --force to rebuild)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "build-base-image: debootstrap needs root; run this script as root (e.g. via sudo)" >&2
    exit 1
fi

# --- pick the Debian mirror ---------------------------------------------------
# detect_mirror PATH_SUFFIX DEFAULT: first apt source URI ending in /PATH_SUFFIX
detect_mirror() {
    local suffix="$1" default="$2" uri
    # deb822 sources (URIs: http://.../debian), then one-line sources (deb http://.../debian suite ...)
    uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' \
            | grep -E "/${suffix}/?\$" | head -n1 || true)"
    if [ -z "$uri" ]; then
        uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
                | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
                | grep -E "/${suffix}/?\$" | head -n1 || true)"
    fi
    echo "${uri:-$default}"
}
MIRROR="${ICN_DEBIAN_MIRROR:-$(detect_mirror debian http://deb.debian.org/debian)}"
MIRROR="${MIRROR%/}"
SECURITY_MIRROR="${ICN_DEBIAN_SECURITY_MIRROR:-$(detect_mirror debian-security http://deb.debian.org/debian-security)}"
SECURITY_MIRROR="${SECURITY_MIRROR%/}"

# --- make sure debootstrap (and the Debian keyring) are installed -------------
if ! command -v debootstrap >/dev/null 2>&1 || [ ! -s /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    log "installing debootstrap and debian-archive-keyring with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends debootstrap debian-archive-keyring
fi

# --- debootstrap --------------------------------------------------------------
WORKDIR="$(mktemp -d "${TMPDIR:-/var/tmp}/icn-base.XXXXXX")"
ROOTFS="$WORKDIR/rootfs"

cleanup() {
    # debootstrap mounts proc/sys inside the target; never rm -rf across a mount.
    if [ -d "$ROOTFS" ]; then
        awk -v root="$ROOTFS" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r \
            | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    fi
    rm -rf --one-file-system "$WORKDIR"
}
trap cleanup EXIT

log "debootstrap --variant=minbase --include=$PACKAGES $SUITE $ROOTFS $MIRROR"
start=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$ROOTFS" "$MIRROR"
log "debootstrap finished in $(( $(date +%s) - start ))s"

cat > "$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF

# --- point-release and security updates ----------------------------------------
if [ "${ICN_BASE_NO_UPGRADE:-0}" != "1" ]; then
    log "applying $SUITE-updates and $SUITE-security upgrades (chroot apt-get upgrade)"
    mount -t proc proc "$ROOTFS/proc"
    chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive apt-get -q update
    chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive apt-get -q -y upgrade
    chroot "$ROOTFS" apt-get clean
    umount "$ROOTFS/proc"
fi

# --- slim it down -------------------------------------------------------------
log "stripping apt caches, docs, man pages, locales"

# Keep future `apt-get install` inside derived images just as slim (as debian-slim does).
cat > "$ROOTFS/etc/dpkg/dpkg.cfg.d/01-icn-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat > "$ROOTFS/etc/apt/apt.conf.d/01-icn-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF

rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/var/cache/apt/archives/partial/* \
       "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/var/cache/debconf/*-old \
       "$ROOTFS"/var/lib/dpkg/*-old \
       "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/usr/share/man/* \
       "$ROOTFS"/usr/share/groff/* \
       "$ROOTFS"/usr/share/lintian/* \
       "$ROOTFS"/usr/share/linda/* \
       "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* \
       "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* \
       "$ROOTFS"/debootstrap
# docs: keep only the copyright files (license compliance)
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
# locales: keep only the alias table
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
# host-specific files debootstrap copied in; docker provides its own at run time
: > "$ROOTFS/etc/resolv.conf"
echo "localhost" > "$ROOTFS/etc/hostname"
: > "$ROOTFS/etc/machine-id" 2>/dev/null || true

log "root filesystem size: $(du -sh --one-file-system "$ROOTFS" | cut -f1)"

# --- import -------------------------------------------------------------------
OLD_ID="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
log "importing as docker image $IMAGE"
tar --numeric-owner --xattrs -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.opencontainers.image.title=icn-base org.opencontainers.image.description=Debian-$SUITE-minbase-via-debootstrap" \
    --message "debootstrap --variant=minbase $SUITE from $MIRROR" \
    - "$IMAGE" >/dev/null

NEW_ID="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
    # the --force rebuild left the previous image untagged; drop it if nothing uses it
    if docker image rm "$OLD_ID" >/dev/null 2>&1; then log "removed previous image ${OLD_ID#sha256:}"; fi
fi
log "done: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' "$IMAGE") in $(( $(date +%s) - start ))s total"
