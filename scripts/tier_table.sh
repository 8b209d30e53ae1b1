#!/usr/bin/env bash
# The tier table of docs/model.md (issue 29): encoder x rationale LLM, every cell through the pipeline (lrsa bench live-quality), same posts, one run each
set -uo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled LRSA_ACTOR_START_TIMEOUT_S=900
MINILM=models/lrsa-default
MPNET=${MPNET:-runs/t29/mpnet-t15}  # the checkpoint of the training command in docs/model.md, "The accurate tier"
KD=${KD:-runs/t29/minilm-kd}  # the distilled MiniLM (docs/model.md, "Distillation into the shipped MiniLM"); skipped if absent
OUT=${OUT:-runs/tiers}
mkdir -p $OUT
run() {  # name checkpoint modes args...
  local name=$1 ckpt=$2 modes=$3; shift 3
  echo "== $name $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  .venv/bin/lrsa bench live-quality --checkpoint "$ckpt" --modes "$modes" --triton-threads 2 --json \
    --out $OUT/$name.json --records-dir $OUT/$name-records "$@" > $OUT/$name.log 2>&1
  echo "   rc $? $(date +%T)"
}
run t15-minilm $MINILM without --dataset twitter2015 --split dev --limit 300
run t15-mpnet $MPNET without --dataset twitter2015 --split dev --limit 300
run brand-minilm $MINILM without --gold samples/brand_posts.gold.jsonl
run brand-mpnet $MPNET without --gold samples/brand_posts.gold.jsonl
# the rationale stage with the default rationale LLM (SmolLM2-135M), on both encoders
run t15-minilm-smollm2 $MINILM with --dataset twitter2015 --split dev --limit 300
run t15-mpnet-smollm2 $MPNET with --dataset twitter2015 --split dev --limit 300
# the distilled MiniLM against the shipped one, Twitter-2017 dev too
if [ -d "$KD" ]; then
  run t15-kd $KD without --dataset twitter2015 --split dev --limit 300
  run brand-kd $KD without --gold samples/brand_posts.gold.jsonl
  run t17-kd $KD without --dataset twitter2017 --split dev --limit 300
  run t17-minilm $MINILM without --dataset twitter2017 --split dev --limit 300
fi
echo "== done $(date +%T)"
