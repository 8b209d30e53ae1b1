"""The rationale distillation job (training/distill.py): targets, label masking, resume, merged model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rationale_helpers import tiny_llama, tiny_tokenizer
from training.distill import DistillSettings, distill, encode_pair, teacher_pairs


def write_mabsa(root: Path) -> Path:
    """A two-post Twitter-2015-shaped train split with its per-aspect teacher reasons."""
    tweets = [
        {"words": ["I", "love", "my", "new", "phone"], "image_id": "1.jpg",
         "aspects": [{"from": 4, "to": 5, "polarity": "POS", "term": ["phone"]}]},
        {"words": ["RT", "I", "hate", "my", "phone"], "image_id": "2.jpg",
         "aspects": [{"from": 4, "to": 5, "polarity": "NEG", "term": ["phone"]}]},
    ]
    reasons = [
        {"text": "I love my new $T$", "target": "phone", "ImageID": "1", "description": "A phone. On a desk.",
         "reason": "Sentiment: Positive. The author loves the phone. Extra sentence dropped."},
        {"text": "RT I hate my $T$", "target": "phone", "ImageID": "2", "description": "A broken phone.",
         "reason": "Sentiment: Negative. The author hates it."},
    ]
    (root / "twitter2015").mkdir(parents=True)
    (root / "rationales" / "twitter2015").mkdir(parents=True)
    (root / "twitter2015" / "train.json").write_text(json.dumps(tweets))
    (root / "rationales" / "twitter2015" / "train.json").write_text(json.dumps(reasons))
    return root


def test_targets_are_the_rationales_the_slm_learnt_from_without_descriptions(tmp_path: Path) -> None:
    pairs = teacher_pairs(DistillSettings(data_dir=write_mabsa(tmp_path / "data")))
    assert pairs == [("I love my new phone", "Sentiment: Positive. The author loves the phone."),
                     ("RT I hate my phone", "Sentiment: Negative. The author hates it.")]
    assert not any("desk" in target for _, target in pairs)  # a text-only student cannot know the image


def test_only_the_answer_is_scored() -> None:
    tok = tiny_tokenizer()
    ids, labels = encode_pair(tok, "I love my new phone", "I love my phone", "d1", max_target_tokens=3)
    answer = [x for x in labels if x != -100]
    assert answer == tok("I love my", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]  # cut, then eos
    assert len(ids) == len(labels) and labels[:len(ids) - len(answer)] == [-100] * (len(ids) - len(answer))
    assert ids[-len(answer):] == answer


@pytest.fixture()
def tiny_model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    tok = tiny_tokenizer()
    tiny_llama(vocab_size=len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_trains_resumes_and_merges_a_loadable_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_mabsa(tmp_path / "data")
    common = dict(model=str(tiny_model_dir), data_dir=data, out=tmp_path / "out", batch_size=1, lr=1e-2,
                  save_every=1, lora_r=4, lora_alpha=8, threads=1)
    first = distill(DistillSettings(epochs=1, **common))  # 2 steps
    assert first["steps"] == 2 and json.loads((tmp_path / "out" / "state" / "progress.json").read_text())["step"] == 2
    again = distill(DistillSettings(epochs=3, **common))  # resumes at step 2 and runs 4 more
    progress = json.loads((tmp_path / "out" / "state" / "progress.json").read_text())
    assert again["steps"] == 6 and progress["step"] == 6 and len(progress["losses"]) == 6
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model")  # a plain model: no peft needed
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not any("lora" in name for name in merged.state_dict())
    changed = [n for n, w in merged.state_dict().items() if not torch.equal(w, base.state_dict()[n])]
    assert any("q_proj" in n for n in changed)  # the adapter was merged into the projections
