#!/usr/bin/env python3
"""The rationale engine (continuous batching, transformers, the dequantised model) against
llama.cpp (llama-cpp-python on the Q4_K_M GGUF itself, one post at a time: its Python API has no
batched generation) for the same LLM, the same prompts (the serving prompt of the first N dev posts)
and the same greedy decoding and token limit, on this CPU, in one run (issue 28 item 2).

    pip install llama-cpp-python      # not a project dependency: a ~10-minute source build
    lrsa models fetch qwen2.5-coder-1.5b-instruct
    python scripts/bench_engine_vs_llamacpp.py --posts 16 --slots 16 --threads 2 --json

Prints generated tokens/s and seconds per post for each, and their ratio (engine / llama.cpp).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-1.5b-instruct", help="a named offline GGUF model")
    p.add_argument("--dataset", default="twitter2015")
    p.add_argument("--data-dir", type=Path, default=None, help="MABSA data folder (default: $LRSA_DATA_DIR, "
                   "else ../shared/data/mabsa)")
    p.add_argument("--posts", type=int, default=16)
    p.add_argument("--slots", type=int, default=16, help="engine rows decoded together")
    p.add_argument("--max-new", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    import torch

    from lrsa import offline_models
    from lrsa.rationale.config import RationaleSettings
    from lrsa.rationale.engine import RationaleEngine, RationaleRequest
    from lrsa.rationale.prompts import PROMPT_VERSION, text_messages
    from lrsa_cli.gold import split_to_gold

    torch.set_num_threads(a.threads)
    from lrsa.settings import DEFAULT_DATA_DIR

    data_dir = a.data_dir or Path(os.environ.get("LRSA_DATA_DIR", DEFAULT_DATA_DIR))
    texts = [g.text for g in split_to_gold(data_dir, a.dataset, "dev", a.posts)]
    report: dict = {"model": a.model, "posts": len(texts), "max_new_tokens": a.max_new, "threads": a.threads,
                    "prompt_version": PROMPT_VERSION}

    engine = RationaleEngine(RationaleSettings(model=a.model, slots=a.slots, threads=a.threads,
                                               max_new_tokens=a.max_new, cache_size=0, device="cpu"))
    t0 = time.perf_counter()
    out = engine.generate([RationaleRequest(t) for t in texts])
    engine_s = time.perf_counter() - t0
    engine_tokens = sum(r.new_tokens for r in out)
    report["engine"] = {"slots": a.slots, "seconds": engine_s, "new_tokens": engine_tokens,
                        "tokens_per_s": engine_tokens / engine_s, "s_per_post": engine_s / len(texts),
                        "load_s": engine.loaded.load_s, "dtype": str(next(engine.loaded.model.parameters()).dtype)}
    del engine

    from llama_cpp import Llama

    llm = Llama(model_path=offline_models.resolve(a.model), n_ctx=1024, n_threads=a.threads, verbose=False, seed=0)
    t0 = time.perf_counter()
    tokens = 0
    for t in texts:
        answer = llm.create_chat_completion(text_messages(t), max_tokens=a.max_new, temperature=0.0)
        tokens += answer["usage"]["completion_tokens"]
    llama_s = time.perf_counter() - t0
    report["llama_cpp"] = {"seconds": llama_s, "new_tokens": tokens, "tokens_per_s": tokens / llama_s,
                           "s_per_post": llama_s / len(texts)}
    report["ratio_engine_over_llamacpp_tokens_per_s"] = (report["engine"]["tokens_per_s"]
                                                         / report["llama_cpp"]["tokens_per_s"])
    report["ratio_engine_over_llamacpp_posts_per_s"] = llama_s / engine_s
    print(json.dumps(report, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
