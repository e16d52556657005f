#!/usr/bin/env bash
# The demo: build the lab, switch on a path-MTU blackhole, show what wg-tuner sees,
# and always tear the lab down, whatever happens on the way.
set -euo pipefail
cd "$(dirname "$0")/.."
WG=$PWD/.venv/bin/wg-tuner
PREFIX=${DEMO_PREFIX:-wgdemo}
STATE=$(mktemp -d /tmp/wg-tuner-demo.XXXXXX)
export WG_TUNER_STATE_DIR=$STATE
cleanup() {
  echo; echo "== tearing the lab down"
  "$WG" lab down --prefix "$PREFIX" --log-format json 2>/dev/null || true
  rm -rf "$STATE"
}
trap cleanup EXIT
step() { echo; echo "== $*"; }

step "building the lab (namespaces $PREFIX-a, $PREFIX-r, $PREFIX-b; wireguard-go on a and b)"
"$WG" lab up --prefix "$PREFIX" 2>/dev/null
"$WG" lab status --prefix "$PREFIX" 2>/dev/null

step "bulk TCP through the healthy tunnel"
"$WG" lab traffic --prefix "$PREFIX" --seconds 2 2>/dev/null || true

step "switching on the mtu-blackhole fault (path MTU 1400, ICMP frag-needed dropped)"
"$WG" lab fault mtu-blackhole on --prefix "$PREFIX" 2>/dev/null
step "bulk TCP now stalls: large packets vanish, small ones pass"
"$WG" lab traffic --prefix "$PREFIX" --seconds 2 2>/dev/null || echo "(transfer failed, as expected)"

step "wg-tuner status --probe on host a (inside its namespace): the probe finds the path MTU"
ip netns exec "$PREFIX-a" "$WG" status --probe --log-format json 2>/dev/null

step "wg-tuner plan on host a: what it would change, and why (dry-run, nothing changes)"
ip netns exec "$PREFIX-a" "$WG" plan --sample 1 --log-format json 2>/dev/null || true

step "wg-tuner apply on host a: apply, verify (short windows for the demo), keep"
ip netns exec "$PREFIX-a" "$WG" apply --settle 1 --verify-window 5 --grace 3 --sample 1 \
  --log-format json 2>/dev/null || true
step "bulk TCP through the tunnel now works"
"$WG" lab traffic --prefix "$PREFIX" --seconds 2 2>/dev/null || true
step "the journal"
ip netns exec "$PREFIX-a" "$WG" history

step "automatic rollback: undo, re-apply, and cut the tunnel during verification"
ip netns exec "$PREFIX-a" "$WG" rollback --all --log-format json 2>/dev/null
applied() { grep -c '"state":"applied"' "$STATE/journal.jsonl" 2>/dev/null || true; }
seen=$(applied)
ip netns exec "$PREFIX-a" "$WG" apply --settle 1 --verify-window 8 --grace 3 --sample 1 \
  --log-format json >"$STATE/apply.out" 2>/dev/null &
APPLY=$!
for _ in $(seq 1 150); do
  [ "$(applied)" -gt "$seen" ] && break
  sleep 0.1
done
"$WG" lab fault down on --prefix "$PREFIX" 2>/dev/null
wait "$APPLY" && rc=0 || rc=$?
"$WG" lab fault down off --prefix "$PREFIX" 2>/dev/null
cat "$STATE/apply.out"
echo "(apply exited $rc: 3 means a change was rolled back)"
ip netns exec "$PREFIX-a" "$WG" history | tail -3

step "the same as Prometheus metrics (peer series)"
ip netns exec "$PREFIX-a" "$WG" metrics --log-format json 2>/dev/null | grep -E '^wireguard_' || true
