#!/usr/bin/env bash
# Runs the whole suite N times in a row (default 5) while a CPU hog keeps one core busy,
# and prints each run's time and tap summary: the check that no test's outcome depends on
# the machine's speed. Usage: scripts/test-under-hog.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
npm run build --silent || exit 1
taskset -c 0 sh -c 'while :; do :; done' &
hog=$!
trap 'kill $hog 2>/dev/null' EXIT
failed=0
for i in $(seq 1 "$runs"); do
  log=$(mktemp)
  start=$(date +%s)
  npx tap > "$log" 2>&1
  rc=$?
  summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -n 1)
  echo "run $i: rc=$rc $(( $(date +%s) - start )) s $summary"
  if [ "$rc" -ne 0 ]; then failed=$((failed + 1)); grep -E '^not ok' "$log"; cp "$log" "hog-run-$i.log"; fi
  rm -f "$log"
done
echo "$runs runs with a CPU hog on one core: $failed failed"
[ "$failed" -eq 0 ]
