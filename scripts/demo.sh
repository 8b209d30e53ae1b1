#!/usr/bin/env bash
# Set up, then run the whole pipeline on the embedded local stack (Kafka + tritonserver + Ray) over
# samples/posts.jsonl and print the results. The first run trains a checkpoint if none exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lrsa demo "$@"
