#!/usr/bin/env bash
# Installs the peers `make bench` measures ICN beside, when missing: Debian's PostgreSQL
# (the double-entry ledger of testing/icn-bench/src/postgres.rs). The benchmark runs a
# cluster of its own in a temporary directory; the package's default cluster is not used.
# Safe to run again: it only installs what is not there.
set -euo pipefail

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL for the ledger benchmark's peer"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
fi
