"""Soft labels from a teacher checkpoint, for distilling it into the model being trained (issue 29, item 4).

The teacher (e.g. the accurate tier, the fused SLM on all-mpnet-base-v2) reads every training
example once, before training: the post text only by default (`text_only`), as the cheap default
worker serves and as the accurate tier was selected (`--dev-text-only`), at one encoder pass a post
instead of three; with `text_only=False` also the rationale and image description where the
example has them. For each word it gives its tag log-probabilities
[num_words, NUM_LABELS] at the word's first sub-word, in its own tokenisation, so a teacher and a
student with different tokenisers (MPNet, MiniLM) still meet at the word. A word the teacher's
`max_text_len` cut off gets no soft label.

Those labels cost one teacher pass (minutes), not one per epoch: the training step stays the
student's own cost. They are kept on disk under the training's `cache_dir`, one file per part of
the training set (each dataset, the brand posts, the targeted-sentiment tweets), keyed by the
teacher's weights and the examples, so an interrupted labelling keeps the finished parts and
another run with the same teacher reuses them.

The loss term (`distillation_loss`) is Hinton et al.'s: the KL divergence from the teacher's
tag distribution to the student's, both softened by a temperature, times its square. Every word
the teacher labelled counts, also the words of targeted-sentiment tweets that carry no gold tag
(only their target is labelled), which is where a teacher adds most beyond the gold labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lrsa.predict import first_subwords
from training.atomic import replaced_whole
from training.data import Example, make_batch

log = logging.getLogger(__name__)


def weights_digest(checkpoint: Path) -> str:
    """SHA-256 of the teacher's weights and config: what its soft labels are keyed by."""
    from lrsa.model import CONFIG_FILE, WEIGHTS_FILE
    from lrsa.model_pack import resolve_checkpoint

    folder = resolve_checkpoint(checkpoint)
    h = hashlib.sha256()
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        with open(folder / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@torch.no_grad()
def _label_part(model, tokenizer, examples: list[Example], batch_size: int, desc: str,
                text_only: bool) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    if text_only:
        examples = [replace(e, rationale=None, description=None) for e in examples]
    for i in tqdm(range(0, len(examples), batch_size), desc=f"teacher labels: {desc}", unit="batch"):
        part = examples[i:i + batch_size]
        tensors, first_token = make_batch(part, tokenizer, model.config)
        tensors.pop("labels")
        logits = model(**tensors).float().log_softmax(-1)
        for row, firsts in zip(logits, first_token):
            words = torch.full((len(firsts), logits.shape[-1]), float("nan"))
            kept, tokens = first_subwords(firsts)
            words[kept] = row[tokens]  # log-probabilities; a word cut by the length limit: NaN, no label
            out.append(words.half())
    return out


def soft_labels(checkpoint: Path, parts: dict[str, list[Example]], cache_dir: Path | None,
                batch_size: int = 32, text_only: bool = True) -> list[torch.Tensor]:
    """The teacher's word log-probabilities (float16; NaN rows: no label) for every example of
    `parts`, in order, as one list. Parts already on disk are read, not recomputed."""
    from lrsa.model import load_checkpoint

    digest = weights_digest(checkpoint)
    model = tokenizer = None
    labels: list[torch.Tensor] = []
    for name, examples in parts.items():
        spec = [digest, [e.words if text_only else [e.words, e.rationale, e.description] for e in examples]]
        key = hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"teacher-{key}.pt" if cache_dir else None
        if path and path.exists():
            log.info("teacher labels for %s from %s", name, path)
            part = torch.load(path)
        else:
            if model is None:
                log.info("labelling the training set with the teacher %s", checkpoint)
                model, tokenizer = load_checkpoint(checkpoint)
                model.eval()
            part = _label_part(model, tokenizer, examples, batch_size, name, text_only)
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                with replaced_whole(path) as tmp:
                    torch.save(part, tmp)
        if len(part) != len(examples):
            raise ValueError(f"teacher labels for {name}: {len(part)} for {len(examples)} examples")
        labels.extend(part)
    return labels


def batch_targets(labels: list[torch.Tensor], first_token: list[list[int]], shape: torch.Size) -> torch.Tensor:
    """The teacher's log-probabilities placed at the student's first sub-word of each word
    [B, T, L]; NaN where there is none (other sub-words, padding, words either model cut off)."""
    out = torch.full(shape, float("nan"))
    for row, (words, firsts) in enumerate(zip(labels, first_token)):
        for w, t in enumerate(firsts):
            if t >= 0 and w < len(words):
                out[row, t] = words[w].float()
    return out


def distillation_loss(logits: torch.Tensor, targets: torch.Tensor, temperature: float,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), averaged over the labelled words (each post's words
    weighed by `weights` [B] where given)."""
    labelled = ~targets.isnan().any(-1)  # [B, T]
    if not labelled.any():
        return logits.sum() * 0.0
    teacher = (targets[labelled] / temperature).log_softmax(-1)
    student = (logits[labelled] / temperature).log_softmax(-1)
    per_word = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1)
    w = torch.ones_like(per_word) if weights is None else weights[:, None].expand_as(labelled)[labelled]
    return temperature ** 2 * (per_word * w).sum() / w.sum().clamp_min(1e-9)

