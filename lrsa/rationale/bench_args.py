"""Flags of the rationale engine benchmark (lrsa/rationale/bench.py), in plain argparse: the
benchmark runs where only torch and transformers are installed, and `lrsa bench rationale`
(lrsa/rationale/cli.py) registers the same flags without importing torch."""

from __future__ import annotations

import argparse

from lrsa.rationale import DEFAULT_MODEL


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of the rationale benchmark (plain argparse: the bench must run without pydantic)."""
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"HF id or local folder (default: {DEFAULT_MODEL}, offline)")
    p.add_argument("--random-init-config", default=None,
                   help="random weights of this HF config (id or path) or a built-in shape: qwen2-0.5b, smollm2-135m")
    p.add_argument("--batch-size", type=int, default=None, help="rows per batch / engine slots (default 128 GPU, 32 CPU)")
    p.add_argument("--prompt-tokens", type=int, default=128, help="longest prompt (default 128)")
    p.add_argument("--prompt-spread", type=float, default=0.5,
                   help="prompt lengths drawn in [P*(1-spread), P] (default 0.5; 0 = all P)")
    p.add_argument("--shared-prefix", type=int, default=0,
                   help="first N tokens common to all prompts, as a chat template's header and system prompt are "
                        "(the v1 prompt: 25 of 68-96 with SmolLM2's tokenizer; default 0)")
    p.add_argument("--min-new", type=int, default=8, help="shortest row stop (default 8)")
    p.add_argument("--max-new", type=int, default=64, help="longest row stop = max_new_tokens (default 64)")
    p.add_argument("--num-prompts", type=int, default=None, help="prompts in the workload (default 4 x batch)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU and on CPUs with native bf16, else fp32), bfloat16, float16, float32")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--compile", action="store_true", help="also torch.compile the engine's decode step")
    p.add_argument("--no-pieces", action="store_true", help="skip the engine-without-X runs")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all contenders; best of each (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
