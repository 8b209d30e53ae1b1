"""Rationale generation throughput: the engine's continuous batcher vs `model.generate()`.

    python -m lrsa.rationale.bench [--random-init-config qwen2-0.5b] [--batch-size 128] [--json]

Needs only torch and transformers (no pydantic, tqdm, Ray...), so it runs on a bare GPU machine.
One run, one model, the same prompts, batch size, token budget and dtype for all contenders:
- generate:        `model.generate()` with its default (dynamic) cache;
- generate_static: `model.generate(cache_implementation="static")` (compiled on GPU by transformers);
- engine:          lrsa.rationale.batcher.ContinuousBatcher (slots + static KV cache, continuous
                   refill, length bucketing, CUDA graphs of the decode step on GPU);
- the engine without each of its pieces, to show what each contributes.
Workload: prompt lengths drawn in [prompt_tokens * (1 - spread), prompt_tokens], the first
`shared_prefix` tokens the same in every prompt (as a chat template's header is); each row stops at
its own length drawn in [min_new, max_new] (random weights never say EOS, so stops are forced,
for every contender alike). Only useful tokens (up to each row's stop) are counted.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForCausalLM, StoppingCriteria, StoppingCriteriaList

from lrsa.rationale.batcher import ContinuousBatcher
from lrsa.rationale.bench_args import add_bench_arguments
from lrsa.rationale.loading import load_model, parse_dtype

# Shapes usable without a hub: name -> (model_type, config kwargs).
BUILTIN_SHAPES: dict[str, tuple[str, dict]] = {
    "qwen2-0.5b": ("qwen2", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                 num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                                 rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6)),
    "smollm2-135m": ("llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                                   rope_theta=100000.0, tie_word_embeddings=True, rms_norm_eps=1e-5)),
}


@dataclass
class Workload:
    prompts: list[list[int]]
    stops: list[int]  # each row's number of new tokens
    max_new: int

    @property
    def useful_tokens(self) -> int:
        return sum(self.stops)


def make_workload(vocab: int, n: int, prompt_tokens: int, spread: float, min_new: int, max_new: int,
                  seed: int = 0, shared_prefix: int = 0) -> Workload:
    rng = random.Random(seed)
    low = max(shared_prefix + 1, int(prompt_tokens * (1 - spread)))
    if low > prompt_tokens:
        raise ValueError(f"a shared prefix of {shared_prefix} tokens leaves no room in {prompt_tokens}-token prompts")
    prefix = [rng.randrange(10, vocab) for _ in range(shared_prefix)]
    prompts = [prefix + [rng.randrange(10, vocab) for _ in range(rng.randint(low, prompt_tokens) - shared_prefix)]
               for _ in range(n)]
    return Workload(prompts, [rng.randint(min_new, max_new) for _ in range(n)], max_new)


class RowStops(StoppingCriteria):
    """Per-row forced stop for generate(): row i is done once it has stops[i] new tokens."""

    def __init__(self, stops: list[int], prompt_width: int, device: torch.device) -> None:
        self.stops = torch.tensor(stops, device=device)
        self.width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return (input_ids.shape[1] - self.width) >= self.stops


def build_model(args: argparse.Namespace, device: str, dtype: torch.dtype):
    """(model, load seconds): real weights, or random ones of a given config for shape-only timing."""
    t0 = time.perf_counter()
    if args.random_init_config:
        if args.random_init_config in BUILTIN_SHAPES:
            kind, kwargs = BUILTIN_SHAPES[args.random_init_config]
            config = AutoConfig.for_model(kind, **kwargs)
        else:
            config = AutoConfig.from_pretrained(args.random_init_config)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
        return model, time.perf_counter() - t0
    loaded = load_model(args.model, device=device, dtype=dtype)
    return loaded.model, loaded.load_s


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def generate_runner(model, work: Workload, batch: int, device: str, static: bool) -> tuple[callable, float]:
    """(one timed pass of generate() over the prompts in batches, seconds of its first call).

    Prompts are left-padded to one width: fixed shapes, so the static cache compiles once on GPU."""
    width = max(len(p) for p in work.prompts)
    extra = {"cache_implementation": "static"} if static else {}

    def one_batch(lo: int) -> None:
        rows = work.prompts[lo: lo + batch]
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
        stops = StoppingCriteriaList([RowStops(work.stops[lo: lo + batch], width, torch.device(device))])
        model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=work.max_new,
                       do_sample=False, eos_token_id=None, pad_token_id=0, stopping_criteria=stops, **extra)

    @torch.inference_mode()
    def run() -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        for lo in range(0, len(work.prompts), batch):
            one_batch(lo)
        _sync(device)
        return {"tok_s": work.useful_tokens / (time.perf_counter() - t0),
                "tok_cpu_s": work.useful_tokens / (time.process_time() - c0)}

    t0 = time.perf_counter()
    one_batch(0)  # first call: compilation of the static cache path on GPU, allocator warm-up elsewhere
    _sync(device)
    return run, time.perf_counter() - t0


def engine_runner(model, work: Workload, batch: int, device: str, **options) -> tuple[callable, float]:
    """(one timed pass of the engine over the prompts, warm-up seconds: cache allocation + graph capture/compile)."""
    t0 = time.perf_counter()
    max_len = max(len(p) for p in work.prompts) + work.max_new
    batcher = ContinuousBatcher(model, slots=batch, max_len=max_len, eos_token_ids=(), **options)
    batcher.warmup()
    batcher.run(work.prompts[: min(len(work.prompts), 2)], 2)  # first-call allocations, compile of prefill paths
    _sync(device)
    warm = time.perf_counter() - t0

    def run() -> dict:
        c0 = time.process_time()
        out, stats = batcher.run(work.prompts, work.stops)
        _sync(device)
        cpu_s = time.process_time() - c0
        assert [len(o) for o in out] == work.stops, "the engine must stop each row at its own length"
        return {"tok_s": stats.tokens_per_s, "tok_cpu_s": stats.new_tokens / cpu_s, "slot_utilisation": round(stats.slot_utilisation, 3),
                "decode_steps": stats.decode_steps, "prefill_calls": stats.prefill_calls,
                "prefill_tokens": stats.prefill_tokens}

    return run, warm


def engine_variants(device: str, compile_decode: bool, shared_prefix: bool) -> dict[str, dict]:
    """The full engine and the engine without one piece each (what each piece contributes)."""
    graphs = device.startswith("cuda")
    full = {"continuous": True, "sort_by_length": True, "cuda_graphs": graphs, "compile": compile_decode}
    variants = {"engine": full,
                "without_continuous_batching": {**full, "continuous": False},
                "without_length_bucketing": {**full, "sort_by_length": False}}
    if shared_prefix:
        variants["without_prefix_sharing"] = {**full, "share_prefix": False}
    if graphs:
        variants["without_cuda_graphs"] = {**full, "cuda_graphs": False}
    if compile_decode:
        variants["without_compile"] = {**full, "compile": False}
    return variants


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lrsa bench rationale", description=__doc__.split("\n\n")[0])
    add_bench_arguments(p)
    return p.parse_args(argv)


def bench(args: argparse.Namespace) -> dict:
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch_size or (128 if device.startswith("cuda") else 32)
    dtype = parse_dtype(args.dtype, device)
    model, load_s = build_model(args, device, dtype)
    vocab = model.config.get_text_config().vocab_size
    work = make_workload(vocab, args.num_prompts or 4 * batch, args.prompt_tokens, args.prompt_spread,
                         args.min_new, args.max_new, args.seed, args.shared_prefix)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # stdout carries only the report

    runners: dict[str, callable] = {}
    warm_s: dict[str, float] = {}
    variants = engine_variants(device, args.compile, args.shared_prefix > 0)
    if args.no_pieces:
        variants = {"engine": variants["engine"]}
    for name, options in variants.items():
        log(f"preparing {name} ...")
        runners[name], warm_s[name] = engine_runner(model, work, batch, device, **options)
    for name, static in (("generate", False), ("generate_static", True)):
        log(f"preparing {name} (first call) ...")
        runners[name], warm_s[name] = generate_runner(model, work, batch, device, static)
    # Interleaved rounds, best of each: a shared machine's noise hits every contender alike.
    results: dict[str, dict] = {}
    rounds: dict[str, list[float]] = {name: [] for name in runners}
    cpu_best: dict[str, float] = {}
    for r in range(args.rounds):
        for name, run in runners.items():
            log(f"round {r + 1}/{args.rounds}: {name} ...")
            got = run()
            rounds[name].append(round(got["tok_s"], 1))
            cpu_best[name] = max(cpu_best.get(name, 0.0), got["tok_cpu_s"])
            if name not in results or got["tok_s"] > results[name]["tok_s"]:
                results[name] = got
    for name in results:
        results[name]["rounds_tok_s"] = rounds[name]
        results[name]["tok_cpu_s"] = round(cpu_best[name], 1)

    engine = results["engine"]["tok_s"]
    best_name = max(("generate", "generate_static"), key=lambda n: results[n]["tok_s"])
    report = {
        "model": args.random_init_config and f"random:{args.random_init_config}" or args.model,
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "dtype": str(dtype).removeprefix("torch."), "batch_size": batch, "num_prompts": len(work.prompts),
        "prompt_tokens": [min(map(len, work.prompts)), max(map(len, work.prompts))],
        "shared_prefix": args.shared_prefix,
        "new_tokens": [args.min_new, args.max_new], "useful_tokens": work.useful_tokens,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "engine_tok_s": round(engine, 1),
        "generate_tok_s": round(results["generate"]["tok_s"], 1),
        "generate_static_tok_s": round(results["generate_static"]["tok_s"], 1),
        "generate_static_first_call_s": round(warm_s["generate_static"], 2),
        "ratio": round(engine / results[best_name]["tok_s"], 3),
        "ratio_baseline": best_name,
        "ratio_vs_generate": round(engine / results["generate"]["tok_s"], 3),
        "ratio_vs_generate_static": round(engine / results["generate_static"]["tok_s"], 3),
        # Tokens per second of this process's CPU time: steadier than wall time on a shared CPU.
        "ratio_cpu_time": round(results["engine"]["tok_cpu_s"] / max(results["generate"]["tok_cpu_s"],
                                                                     results["generate_static"]["tok_cpu_s"]), 3),
        "load_s": round(load_s, 2),
        "engine_warmup_s": round(warm_s["engine"], 2),
        "engine_cold_start_s": round(load_s + warm_s["engine"], 2), "rounds": args.rounds,
        "pieces": {name: {"tok_s": round(r["tok_s"], 1), "engine_speedup": round(engine / r["tok_s"], 3),
                          "tok_cpu_s": r["tok_cpu_s"],
                          "engine_speedup_cpu_time": round(results["engine"]["tok_cpu_s"] / r["tok_cpu_s"], 3),
                          **{k: r[k] for k in ("slot_utilisation", "decode_steps", "prefill_calls", "prefill_tokens",
                                                   "rounds_tok_s")
                             if k in r}}
                   for name, r in results.items()},
    }
    return report


def print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    print(f"model {report['model']} on {report['device']} ({report['dtype']}), batch {report['batch_size']}, "
          f"{report['num_prompts']} prompts of {report['prompt_tokens'][0]}-{report['prompt_tokens'][1]} tokens "
          f"({report['shared_prefix']} shared), "
          f"row stops {report['new_tokens'][0]}-{report['new_tokens'][1]} new tokens")
    print(f"{'contender':32s} {'useful tok/s':>12s} {'engine x':>9s} {'tok/cpu-s':>10s} {'engine x':>9s}")
    for name, r in report["pieces"].items():
        print(f"{name:32s} {r['tok_s']:12.1f} {r['engine_speedup']:9.2f} {r['tok_cpu_s']:10.1f} "
              f"{r['engine_speedup_cpu_time']:9.2f}")
    print(f"ratio engine / {report['ratio_baseline']} (the faster generate): {report['ratio']:.2f}x  "
          f"(vs generate {report['ratio_vs_generate']:.2f}x, vs static {report['ratio_vs_generate_static']:.2f}x); "
          f"by CPU time {report['ratio_cpu_time']:.2f}x")
    print(f"engine cold start {report['engine_cold_start_s']:.2f} s (load {report['load_s']:.2f} s + "
          f"warm-up {report['engine_warmup_s']:.2f} s); generate static first call "
          f"{report['generate_static_first_call_s']:.2f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print_report(bench(args), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
