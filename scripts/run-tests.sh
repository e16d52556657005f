#!/usr/bin/env bash
# The test suite: the long soak runs (a fault toggled for 10 minutes under the daemon,
# the NAT timeouts; mostly waiting) run in their own lab beside the main suite, so the
# whole takes about as long as the longer of the two. Both must pass; pytest's exit 5
# (nothing collected) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
log=$(mktemp -t wg-tuner-soak.XXXXXX)
figures=$(mktemp -d -t wg-tuner-figures.XXXXXX)
export WG_TUNER_FIGURES="$figures"
"$PY" -m pytest -m soak -p no:cacheprovider -q "$@" >"$log" 2>&1 &
soak=$!
"$PY" -m pytest -m "not soak" --durations=12 "$@"
main=$?
echo "--- soak run (tests marked soak) ---"
wait "$soak"
soak_rc=$?
cat "$log"
rm -f "$log"
echo "main suite exit $main, soak run exit $soak_rc"
[ "$main" -eq 0 ] && [ "$soak_rc" -eq 0 ] || { rm -rf "$figures"; exit 1; }
# Only a wholly green run regenerates the figures (a partial run would drop rows). A
# green partial run (arguments given) keeps its figures in wg-tuner-figures-last under
# TMPDIR, to be merged with another partial run's by `python -m tests.reliability`.
if [ $# -eq 0 ]; then
  "$PY" -m tests.reliability "$figures" docs/reliability.md
else
  last="${TMPDIR:-/tmp}/wg-tuner-figures-last"
  rm -rf "$last" && cp -r "$figures" "$last"
fi
rm -rf "$figures"
