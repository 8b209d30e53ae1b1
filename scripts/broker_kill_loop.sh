#!/usr/bin/env bash
# Issue 31 item 2: the 3-broker kill test (tests/devstack/test_kafka_cluster.py, both delivery
# modes) N times in a row, with any xfail mark off (--runxfail); each run's log kept in OUT
# (and a failed run's pytest temp folder, with the worker's log).
#   N=10 OUT=runs/kill-loop scripts/broker_kill_loop.sh
# One line per run: rc, seconds, and the results/duplicates the test printed; exit 1 if any failed.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-runs/kill-loop}
mkdir -p "$out"
failed=0
for i in $(seq 1 "${N:-10}"); do
  start=$(date +%s)
  timeout 900 .venv/bin/python -m pytest -q -p no:cacheprovider --runxfail -s \
    tests/devstack/test_kafka_cluster.py -k broker_killed --basetemp="$out/tmp$i" > "$out/run$i.log" 2>&1
  rc=$?
  if [ "$rc" = 0 ]; then rm -rf "$out/tmp$i"; else failed=$((failed + 1)); fi  # a failed run keeps its worker logs
  echo "run $i rc $rc $(( $(date +%s) - start )) s $(grep -ho '[0-9]* results, [0-9]* duplicates' "$out/run$i.log" | tr '\n' ' ') $(date +%T)"
done
echo "failed runs: $failed of ${N:-10}"
[ "$failed" = 0 ]
