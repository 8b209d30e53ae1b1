"""`lrsa rationales`: write post-level rationales for a dataset split (the batch job)."""

from __future__ import annotations

import argparse
from pathlib import Path

# flag -> (type, help); each flag overrides the field of RationalesJobSettings of the same name.
FLAGS = {
    "--dataset": (str, "twitter2015 or twitter2017 (default twitter2015)"),
    "--split": (str, "train or dev (default dev)"),
    "--out": (Path, "JSONL output (default runs/rationales/<model>/<dataset>/<split>.jsonl)"),
    "--data-dir": (Path, "MABSA data folder (env LRSA_DATA_DIR)"),
    "--model": (str, "rationale LLM: HF id, local folder, or smollm2-135m-instruct (offline default)"),
    "--device": (str, "auto, cpu, cuda, cuda:N (default auto)"),
    "--dtype": (str, "auto (bf16 on GPU and on CPUs with native bf16, else fp32), bfloat16, float16, float32"),
    "--prompt-version": (str, "prompt template version (default: the latest)"),
    "--max-new-tokens": (int, "longest rationale in tokens (default 64)"),
    "--slots": (int, "rows decoded together (default 32)"),
    "--threads": (int, "torch CPU threads"),
    "--chunk-size": (int, "posts per engine call and per flushed write (default 64)"),
    "--limit": (int, "only the first N posts"),
}


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rationales", help="write LLM rationales for a dataset split (JSONL, resumable)",
                       description="Post-level rationales with the serving engine and prompts, so the SLM "
                                   "trains on the LLM that serves it. Settings also come from env LRSA_<FIELD>.")
    for flag, (kind, text) in FLAGS.items():
        p.add_argument(flag, type=kind, default=None, help=text)
    p.set_defaults(func=_rationales)


def _rationales(args: argparse.Namespace) -> int:
    from lrsa.settings import settings_from_args
    from training.rationales_job import RationalesJobSettings, run

    print(run(settings_from_args(RationalesJobSettings, args)))
    return 0
