#!/usr/bin/env bash
# The rationale engine's GPU benchmark (one H200 in the issue's anchors), with only torch and
# transformers installed: bf16, batch 128, 128-token prompts, row stops in [8, 64], Qwen2-0.5B's
# shape with random weights. Prints one JSON object; `ratio` is engine / the faster generate().
#   bash lrsa/rationale/gpu_bench.sh [extra flags, e.g. --compile or --prompt-spread 0]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-python}" -m lrsa.rationale.bench --random-init-config qwen2-0.5b --device cuda --dtype bfloat16 \
  --batch-size 128 --prompt-tokens 128 --min-new 8 --max-new 64 --num-prompts 1024 --json "$@"
