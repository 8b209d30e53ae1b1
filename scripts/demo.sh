#!/usr/bin/env bash
# Set up what the main job needs (scripts/setup.sh), then run the whole pipeline on the embedded
# local stack (Kafka + tritonserver + Ray) over samples/posts.jsonl with the shipped default model
# (models/lrsa-default) and print the results; the elapsed time of each step comes at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
bash scripts/setup.sh
setup_s=$((SECONDS - t0))
rc=0
.venv/bin/lrsa demo "$@" || rc=$?
echo "[demo.sh] elapsed: set-up ${setup_s} s, demo $((SECONDS - t0 - setup_s)) s, total $((SECONDS - t0)) s"
exit "$rc"
