"""`lrsa rationales`: write post-level rationales for a dataset split (the batch job)."""

from __future__ import annotations

import argparse

from lrsa.settings import add_settings_flags, settings_from_args
from training.settings import RationalesJobSettings


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rationales", help="write LLM rationales for a dataset split (JSONL, resumable)",
                       description="Post-level rationales with the serving engine and prompts, so the SLM "
                                   "trains on the LLM that serves it.")
    add_settings_flags(p, RationalesJobSettings)
    p.set_defaults(func=_rationales)
    from training.rationale_quality import register as register_quality

    register_quality(bench)  # bench rationale-quality


def _rationales(args: argparse.Namespace) -> int:
    from training.rationales_job import run

    print(run(settings_from_args(RationalesJobSettings, args)))
    return 0
