#!/usr/bin/env bash
# End-to-end smoke test of the compose network (docker-compose.yml):
#   build the image from the prebuilt release binaries, start 3 nodes x 5 services with
#   the `nat` profile (coturn), wait for every service to be healthy (gRPC health),
#   check that node1 is connected to 2 peers, that every netd's STUN answered and its
#   TURN allocation holds a relay, look up node1's and node3's DIDs, send a message node1 -> node3 over the
#   smoke protocol and check that node3's subscriber received it with node1's DID as its
#   sender, then tear everything down. Any check that does not hold, or any lookup that
#   fails or comes back empty, fails the run with a "FAIL: ..." line on stderr.
#
# Needs: docker, Compose (`docker compose` v2 or `docker-compose` v1), python3, and
# release binaries (cargo build --release --workspace). Never compiles Rust itself.
#
# Environment: SMOKE_HEALTH_TIMEOUT (default 120 s), SMOKE_PEERS_TIMEOUT (30 s),
#              SMOKE_MESSAGE_TIMEOUT (30 s), SMOKE_SKIP_BUILD=1 to reuse icn/node:dev.
# Last line of output: "compose smoke: 1 passed, 0 failed" (or "0 passed, 1 failed").
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"

PROJECT=icn-smoke
HEALTH_TIMEOUT="${SMOKE_HEALTH_TIMEOUT:-120}"
PEERS_TIMEOUT="${SMOKE_PEERS_TIMEOUT:-30}"
MESSAGE_TIMEOUT="${SMOKE_MESSAGE_TIMEOUT:-30}"
NETD=http://127.0.0.1:7100
PAYLOAD="hello from node1"
SERVICES=()
for n in 1 2 3; do
    for s in netd gossip ledger compute gateway; do SERVICES+=("node$n-$s"); done
done

PASSED=0
TORN_DOWN=0
WORK="$(mktemp -d "${TMPDIR:-/tmp}/icn-smoke.XXXXXX")"
SUB_PID=""
T0=$(date +%s)

log() { echo "[smoke +$(( $(date +%s) - T0 ))s] $*"; }

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    echo "compose smoke: neither 'docker compose' nor 'docker-compose' is installed" >&2
    echo "compose smoke: 0 passed, 1 failed"
    exit 1
fi
# With the `nat` profile: coturn on the mesh, every netd told to use it.
export ICN_STUN_SERVERS=coturn:3478 ICN_TURN_SERVER=coturn:3478
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$REPO_ROOT/docker-compose.yml" --profile nat "$@"; }
# icnctl inside a service container, bounded in time, no stdin.
icnctl_in() { local svc="$1"; shift; timeout 30 "${COMPOSE[@]}" -p "$PROJECT" -f "$REPO_ROOT/docker-compose.yml" exec -T "$svc" icnctl "$@" </dev/null; }

project_containers() { docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"; }

# "service status health" for every container of the project
container_states() {
    local ids
    ids="$(project_containers)"
    [ -n "$ids" ] || return 0
    # shellcheck disable=SC2086
    docker inspect --format '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}}' $ids
}

container_of() { docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=$1" | sed -n 1p; }

dump_service() {
    local svc="$1" id
    id="$(container_of "$svc")"
    if [ -z "$id" ]; then echo "---- $svc: no container"; return; fi
    echo "---- $svc: $(docker inspect --format '{{.State.Status}} health={{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} exit={{.State.ExitCode}}' "$id")"
    docker inspect --format '{{if .State.Health}}{{range .State.Health.Log}}  probe exit={{.ExitCode}}: {{printf "%.300q" .Output}}{{println}}{{end}}{{end}}' "$id" 2>/dev/null | sed "/^$/d" | tail -n 3 || true
    echo "  logs (last 25 lines):"
    docker logs --tail 25 "$id" 2>&1 | sed 's/^/  | /' || true
}

teardown() {
    [ "$TORN_DOWN" -eq 1 ] && return 0
    TORN_DOWN=1
    log "tearing down: ${COMPOSE[*]} -p $PROJECT down -v --remove-orphans"
    compose down -v --remove-orphans >"$WORK/down.log" 2>&1 || { cat "$WORK/down.log"; return 1; }
}

on_exit() {
    local rc=$?
    set +e
    if [ -n "$SUB_PID" ] && kill -0 "$SUB_PID" 2>/dev/null; then kill "$SUB_PID" 2>/dev/null; fi
    teardown
    rm -rf "$WORK"
    if [ "$PASSED" -eq 1 ] && [ "$rc" -eq 0 ]; then
        echo "compose smoke: 1 passed, 0 failed"
        exit 0
    fi
    echo "compose smoke: 0 passed, 1 failed"
    exit $(( rc == 0 ? 1 : rc ))
}
trap on_exit EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }

json() {  # json PYTHON_EXPR < JSON  (the parsed document is `d`)
    python3 -c 'import json, sys
d = json.load(sys.stdin)
print(eval(sys.argv[1]))' "$1"
}

# ---------------------------------------------------------------- build
if [ "${SMOKE_SKIP_BUILD:-0}" = "1" ]; then
    log "SMOKE_SKIP_BUILD=1: using the existing ${ICN_IMAGE:-icn/node:dev}"
else
    log "building the image: deploy/docker/build-images.sh"
    deploy/docker/build-images.sh
fi
docker image inspect "${ICN_IMAGE:-icn/node:dev}" >/dev/null 2>&1 || fail "image ${ICN_IMAGE:-icn/node:dev} does not exist"

# ---------------------------------------------------------------- up
log "removing leftovers of an earlier run, if any"
compose down -v --remove-orphans >/dev/null 2>&1 || true
log "${COMPOSE[*]} -p $PROJECT --profile nat up -d"
if ! compose up -d; then
    for n in 1 2 3; do dump_service "node$n-init"; done
    fail "compose up failed"
fi

# ---------------------------------------------------------------- health
log "waiting up to ${HEALTH_TIMEOUT}s for ${#SERVICES[@]} services to be healthy"
deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
while :; do
    states="$(container_states)"
    unhealthy=()
    dead=()
    for svc in "${SERVICES[@]}"; do
        line="$(echo "$states" | awk -v s="$svc" '$1 == s { print; exit }')"
        read -r _ status health _ <<<"${line:-x missing missing 0}"
        [ "$health" = "healthy" ] || unhealthy+=("$svc($status/$health)")
        case "$status" in exited|dead) dead+=("$svc") ;; esac
    done
    if [ "${#unhealthy[@]}" -eq 0 ]; then
        log "all ${#SERVICES[@]} services healthy"
        break
    fi
    if [ "${#dead[@]}" -gt 0 ] || [ "$(date +%s)" -ge "$deadline" ]; then
        if [ "${#dead[@]}" -gt 0 ]; then
            for d in "${dead[@]}"; do dump_service "$d"; done
            fail "service containers exited: ${dead[*]}"
        fi
        for u in "${unhealthy[@]}"; do dump_service "${u%%(*}"; done
        fail "not healthy after ${HEALTH_TIMEOUT}s: ${unhealthy[*]}"
    fi
    sleep 2
done

# ---------------------------------------------------------------- peers
log "waiting up to ${PEERS_TIMEOUT}s for node1 to have 2 connected peers"
deadline=$(( $(date +%s) + PEERS_TIMEOUT ))
while :; do
    connected=-1
    if icnctl_in node1-netd --endpoint "$NETD" peers --json >"$WORK/peers.json" 2>"$WORK/peers.err"; then
        connected="$(json 'sum(1 for p in d if p.get("state") == "connected")' <"$WORK/peers.json" 2>"$WORK/peers.parse" || echo -1)"
    fi
    if [ "$connected" -ge 2 ]; then
        log "node1 peers: $connected connected"
        sed 's/^/  /' "$WORK/peers.json"
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "last 'icnctl peers --json' output:" >&2
        cat "$WORK/peers.json" "$WORK/peers.err" "$WORK/peers.parse" >&2 2>/dev/null || true
        for n in 1 2 3; do dump_service "node$n-netd"; done
        fail "node1 has $connected connected peers after ${PEERS_TIMEOUT}s, expected >= 2"
    fi
    sleep 1
done

# ---------------------------------------------------------------- isolation
# A node's internal gRPC is its own: another node's containers cannot reach it (gossip
# trusts its callers' `reader`), while the node's own containers can.
log "checking that node2's containers cannot reach node1's gossip, and node1's can"
icnctl_in node1-ledger health --endpoint http://node1-gossip:7200 >/dev/null 2>&1 \
    || fail "node1's ledger cannot reach node1's gossip"
if icnctl_in node2-gossip health --endpoint http://node1-gossip:7200 >/dev/null 2>&1; then
    fail "node2's gossip container reached node1's gossip gRPC: the nodes' networks are not separate"
fi

# ---------------------------------------------------------------- DIDs
DID_RE='^did:icn:z[1-9A-HJ-NP-Za-km-z]+$'   # did:icn:z + base58 (crates/icn-identity/src/did.rs)
# node_did N VAR: set VAR to node N's DID from `icnctl status --json`, or fail
node_did() {
    local n="$1" out="$WORK/status$1.json" did
    icnctl_in "node$n-netd" --endpoint "$NETD" status --json >"$out" 2>"$out.err" \
        || { cat "$out" "$out.err" >&2; fail "icnctl status --json failed in node$n-netd"; }
    did="$(json 'd["did"]' <"$out" 2>"$out.err")" \
        || { cat "$out.err" >&2; fail "node$n's status --json: expected a 'did' field, got: $(head -c 300 "$out")"; }
    [[ "$did" =~ $DID_RE ]] \
        || { cat "$out" >&2; fail "node$n's DID: expected did:icn:z<base58>, got '$did'"; }
    printf -v "$2" '%s' "$did"
}
node_did 1 NODE1_DID
node_did 3 NODE3_DID
[ "$NODE1_DID" != "$NODE3_DID" ] || fail "node1 and node3 have the same DID: $NODE1_DID"
log "node1 DID: $NODE1_DID  node3 DID: $NODE3_DID"

# ---------------------------------------------------------------- STUN and TURN (profile nat)
# Every netd gathers its candidates from the profile's coturn: STUN answers and TURN
# allocates a relay (a netd that started before coturn retries within seconds).
for n in 1 2 3; do
    out="$WORK/nat$n.json"
    deadline=$(( $(date +%s) + 30 ))
    while :; do
        icnctl_in "node$n-netd" --endpoint "$NETD" status --json >"$out" 2>"$out.err" \
            || { cat "$out" "$out.err" >&2; fail "icnctl status --json failed in node$n-netd"; }
        turn="$(json 'd["turn"]["state"]' <"$out")" || fail "node$n's status --json has no turn state: $(head -c 300 "$out")"
        stun="$(json 'd["stun"]["state"]' <"$out")" || fail "node$n's status --json has no stun state"
        relay="$(json 'd["relay_address"]' <"$out")"
        [ "$turn" = allocated ] && [ "$stun" = answered ] && [ -n "$relay" ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            cat "$out" >&2
            dump_service coturn
            fail "node$n: TURN $turn, STUN $stun after 30 s (expected allocated, answered)"
        fi
        sleep 1
    done
    log "node$n: STUN answered, TURN relay $relay"
done

# ---------------------------------------------------------------- message node1 -> node3
log "subscribing on node3 (protocol smoke, 1 message)"
"${COMPOSE[@]}" -p "$PROJECT" -f "$REPO_ROOT/docker-compose.yml" exec -T node3-netd \
    icnctl --endpoint "$NETD" subscribe --protocol smoke --count 1 --json \
    </dev/null >"$WORK/sub.out" 2>"$WORK/sub.err" &
SUB_PID=$!
# wait until the subscriber runs inside the container, then give its stream a second
node3_netd="$(container_of node3-netd)"
[ -n "$node3_netd" ] || fail "no container found for node3-netd"
for _ in $(seq 1 20); do
    docker top "$node3_netd" -o pid,args 2>/dev/null | grep 'icnctl.*subscribe' >/dev/null && break
    kill -0 "$SUB_PID" 2>/dev/null || break
    sleep 0.5
done
sleep 1
kill -0 "$SUB_PID" 2>/dev/null \
    || { cat "$WORK/sub.out" "$WORK/sub.err" >&2; fail "the subscriber on node3 exited before anything was sent"; }

log "sending '$PAYLOAD' from node1 to node3"
icnctl_in node1-netd --endpoint "$NETD" send --to "$NODE3_DID" --protocol smoke --payload "$PAYLOAD" \
    || fail "icnctl send failed on node1"

log "waiting up to ${MESSAGE_TIMEOUT}s for node3's subscriber"
deadline=$(( $(date +%s) + MESSAGE_TIMEOUT ))
while kill -0 "$SUB_PID" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        kill "$SUB_PID" 2>/dev/null || true
        echo "subscriber output so far:" >&2; cat "$WORK/sub.out" "$WORK/sub.err" >&2
        dump_service node1-netd; dump_service node3-netd
        fail "node3's subscriber did not receive a message within ${MESSAGE_TIMEOUT}s"
    fi
    sleep 0.5
done
sub_rc=0; wait "$SUB_PID" || sub_rc=$?
SUB_PID=""
echo "  subscriber output:"; sed 's/^/  /' "$WORK/sub.out"
[ "$sub_rc" -eq 0 ] || { cat "$WORK/sub.err" >&2; fail "the subscriber exited with status $sub_rc"; }
python3 - "$WORK/sub.out" "$PAYLOAD" "$NODE1_DID" <<'PY' || fail "the message node3 received does not match what node1 sent"
import json, sys
path, payload, node1 = sys.argv[1:4]
if not node1:
    sys.exit("node1's DID is empty: nothing to compare the sender with")
try:
    msgs = [json.loads(l) for l in open(path) if l.strip()]
except ValueError as e:
    sys.exit(f"the subscriber's output is not one JSON object per line ({e}): {open(path).read()!r}")
ok = [m for m in msgs if m.get("protocol") == "smoke" and m.get("payload") == payload]
if not ok:
    sys.exit(f"expected a message with protocol 'smoke' and payload {payload!r}, got {msgs!r}")
sender = ok[0].get("from")
if sender != node1:
    sys.exit(f"expected the message's sender ('from') to be node1's DID {node1!r}, got {sender!r}")
print(f"  received {payload!r} from {sender}")
PY

# ---------------------------------------------------------------- down
teardown || fail "compose down failed"
left="$(project_containers)"
[ -z "$left" ] || fail "containers left after down: $left"
left="$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
[ -z "$left" ] || fail "volumes left after down: $left"
log "all checks passed"
PASSED=1
