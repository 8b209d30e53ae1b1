"""`lrsa distill-rationales`: teach the serving LLM to write the teacher's rationales (issue 18, candidate 3).

The fused SLM learns from the dataset's rationales: per-aspect reasons written by a vision LLM that
saw the image and was told the gold aspect, joined per post (training/data.py, the first two
sentences of each). At serving the small rationale LLM writes something else, so the SLM reads a
language it never learnt. Here the serving LLM (SmolLM2-135M by default, any causal LM by HF id or
folder) is fine-tuned with LoRA (`peft`) to write, from the post text alone, exactly the post-level
rationale the SLM was trained on. Image descriptions are not targets: a text-only student cannot
know them. The reasons name the gold aspects; the student has to find them from the text, which is
what it must do when serving too.

Training is resumable (adapter, optimiser and step saved every `save_every` steps under
`out/state`), shows a progress bar, and ends by merging the adapter into a plain model folder
(`out/model`) that `LRSA_RATIONALE_MODEL` (or `--model` of the batch job) can load, to be used with
prompt version `d1` (lrsa/rationale/prompts.py).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lrsa.rationale import DEFAULT_MODEL
from lrsa.settings import LrsaSettings, data_dir_field

log = logging.getLogger(__name__)


class DistillSettings(LrsaSettings):
    """`lrsa distill-rationales` (env LRSA_DISTILL_<FIELD>)."""

    model_config = SettingsConfigDict(env_prefix="LRSA_DISTILL_")

    model: str = Field(DEFAULT_MODEL, description="student LLM: HF id, local folder, or the offline default")
    datasets: str = Field("twitter2015", description="comma list of MABSA datasets whose train split teaches")
    data_dir: Path = data_dir_field()
    out: Path = Field(Path("runs/distill/smollm2-d1"), description="folder: state/ while training, model/ at the end")
    prompt_version: str = Field("d1", description="prompt the student is trained and served with")
    epochs: float = Field(1.0, gt=0, description="passes over the training posts (fractions allowed)")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(5e-4, gt=0, description="peak learning rate (linear warm-up 5%, linear decay)")
    lora_r: int = Field(16, ge=1, description="LoRA rank (all attention and MLP projections)")
    lora_alpha: int = Field(32, ge=1)
    max_target_tokens: int = Field(96, ge=8, description="teacher rationale tokens kept (the serving max_new_tokens)")
    limit: int | None = Field(None, ge=1, description="only the first N training posts of each dataset")
    save_every: int = Field(50, ge=1, description="steps between resumable saves")
    threads: int | None = Field(None, ge=1, description="torch CPU threads")
    seed: int = 13
    device: str = Field("auto", description="auto, cpu, cuda")


def teacher_pairs(s: DistillSettings) -> list[tuple[str, str]]:
    """(post text as the pipeline sees it, the post-level rationale the SLM is trained on)."""
    from training.data import load_split

    pairs = []
    for dataset in [d.strip() for d in s.datasets.split(",") if d.strip()]:
        for ex in load_split(s.data_dir, dataset, "train", rationale_source="reasons", use_description=False,
                             limit=s.limit):
            if ex.rationale:
                pairs.append((" ".join(ex.words), ex.rationale))
    return pairs


def encode_pair(tokenizer, text: str, target: str, version: str, max_target_tokens: int) -> tuple[list[int], list[int]]:
    """Prompt + target ids, and labels that score the target only (the prompt is -100)."""
    from lrsa.rationale.prompts import render, text_messages

    prompt = render(tokenizer, text_messages(text, version))
    answer = tokenizer(target, add_special_tokens=False)["input_ids"][:max_target_tokens]
    answer = answer + [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else answer
    return prompt + answer, [-100] * len(prompt) + answer


def distill(s: DistillSettings) -> dict:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lrsa.rationale.loading import resolve_model_dir

    if s.threads:
        torch.set_num_threads(s.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if s.device == "auto" else s.device
    random.seed(s.seed)
    torch.manual_seed(s.seed)
    base_dir = resolve_model_dir(s.model)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    pairs = teacher_pairs(s)
    if not pairs:
        raise ValueError(f"no teacher rationales under {s.data_dir} for {s.datasets}")
    encoded = [encode_pair(tokenizer, t, r, s.prompt_version, s.max_target_tokens) for t, r in pairs]
    steps_per_epoch = math.ceil(len(encoded) / s.batch_size)
    total = max(1, round(steps_per_epoch * s.epochs))
    state_dir, model_dir = s.out / "state", s.out / "model"

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(device)
    if (state_dir / "adapter_config.json").exists():
        model = PeftModel.from_pretrained(base, state_dir, is_trainable=True)
        progress = json.loads((state_dir / "progress.json").read_text())
    else:
        lora = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.05, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(base, lora)
        progress = {"step": 0, "losses": []}
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=s.lr, weight_decay=0.0)
    if (state_dir / "optimiser.pt").exists():
        optimiser.load_state_dict(torch.load(state_dir / "optimiser.pt"))
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda k: min((k + 1) / warmup, max(0.0, (total - k) / max(1, total - warmup))))
    for _ in range(progress["step"]):
        schedule.step()
    # a fixed shuffled order over all epochs, so a resumed run sees the batches it would have seen
    order = [i for e in range(math.ceil(s.epochs)) for i in random.Random(s.seed + e).sample(range(len(encoded)),
                                                                                              len(encoded))]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(progress["step"], total), initial=progress["step"], total=total, desc="distil", unit="step")
    for step in bar:
        batch = [encoded[i] for i in order[step * s.batch_size:(step + 1) * s.batch_size]]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch], device=device)
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch], device=device)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        optimiser.zero_grad(set_to_none=True)
        progress["step"] = step + 1
        progress["losses"].append(round(loss.item(), 4))
        bar.set_postfix(loss=f"{sum(progress['losses'][-20:]) / len(progress['losses'][-20:]):.3f}")
        if progress["step"] % s.save_every == 0 or progress["step"] == total:
            model.save_pretrained(state_dir)
            torch.save(optimiser.state_dict(), state_dir / "optimiser.pt")
            (state_dir / "progress.json").write_text(json.dumps(progress))
    seconds = time.perf_counter() - t0
    merged = model.merge_and_unload()
    merged.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    report = {"posts": len(pairs), "steps": total, "batch_size": s.batch_size, "epochs": s.epochs,
              "seconds_this_run": round(seconds, 1), "device": device, "prompt_version": s.prompt_version,
              "loss_first20": _mean(progress["losses"][:20]), "loss_last20": _mean(progress["losses"][-20:]),
              "model_dir": str(model_dir)}
    (s.out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None
