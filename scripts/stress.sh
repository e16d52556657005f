#!/usr/bin/env bash
# `make test-stress`: the timing-sensitive tests (marker `timing`: windows, grace, probes,
# signals) STRESS_RUNS times in a row (default 10), then the whole suite, VM modules
# included, STRESS_SUITE_RUNS times (default 2), all beside STRESS_HOGS busy-loop
# processes (default 1: a shared build host's busy neighbour on one of two cores).
# Every run must pass. Results go to stdout and, as one line per run, to STRESS_LOG
# (default /tmp/wg-tuner-stress.log); a failing run's whole output is kept beside it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
runs=${STRESS_RUNS:-10}
suite_runs=${STRESS_SUITE_RUNS:-2}
log=${STRESS_LOG:-/tmp/wg-tuner-stress.log}  # failing runs' full output lands beside it
hogs=()
for _ in $(seq "${STRESS_HOGS:-1}"); do
  "$PY" -c 'while True: pass' &
  hogs+=($!)
done
cleanup() { kill "${hogs[@]}" 2>/dev/null; wait "${hogs[@]}" 2>/dev/null; }
trap cleanup EXIT
echo "stress: ${#hogs[@]} CPU hogs (pids ${hogs[*]}); $runs timing runs, $suite_runs suite runs"
passed=0
for n in $(seq "$runs"); do
  start=$(date +%s)
  if "$PY" -m pytest -m "timing and not soak" -q -p no:cacheprovider "$@" >/tmp/wg-tuner-stress.$$ 2>&1; then
    passed=$((passed + 1)); result=pass
  else
    result=FAIL; cp /tmp/wg-tuner-stress.$$ "${log%/*}/stress-timing-$n.failed.log" 2>/dev/null
    grep -E '^(FAILED|E  )' /tmp/wg-tuner-stress.$$ | head -40
  fi
  line="timing run $n/$runs: $result ($(tail -1 /tmp/wg-tuner-stress.$$ | tr -d '=')) in $(( $(date +%s) - start )) s"
  echo "$line"; echo "$(date -u +%FT%TZ) $line" >>"$log"
done
suite_passed=0
for n in $(seq "$suite_runs"); do
  start=$(date +%s)
  if scripts/run-tests.sh "$@" >/tmp/wg-tuner-stress.$$ 2>&1; then
    suite_passed=$((suite_passed + 1)); result=pass
  else
    result=FAIL; cp /tmp/wg-tuner-stress.$$ "${log%/*}/stress-suite-$n.failed.log" 2>/dev/null
    grep -E '^(FAILED|E  )' /tmp/wg-tuner-stress.$$ | head -40
  fi
  line="suite run $n/$suite_runs: $result in $(( $(date +%s) - start )) s"
  echo "$line"; echo "$(date -u +%FT%TZ) $line" >>"$log"
done
rm -f /tmp/wg-tuner-stress.$$
echo "stress: timing $passed/$runs, suite $suite_passed/$suite_runs"
[ "$passed" -eq "$runs" ] && [ "$suite_passed" -eq "$suite_runs" ]
