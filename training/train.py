"""Training loop of the fused SLM: AdamW, linear warmup/decay, early stopping on dev JMASA F1.

Out folder: the best model as a checkpoint (model.safetensors, config.json, tokenizer), its
metrics (metrics.json: dev scores, per-epoch history, timings, settings) and a resumable
state in train_state/state.pt (last weights, optimizer, scheduler, epoch, RNG, the weight
average if one is kept), replaced whole after each epoch; running the same command again
continues from there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model
from tqdm import tqdm

from lrsa import offline_models
from lrsa.labels import IGNORE_INDEX, NUM_LABELS
from lrsa.model import FusedSLM, FusedSLMConfig, default_text_encoder, save_checkpoint
from training import brand_posts
from training.atomic import replaced_whole
from training.data import MemoryCache, make_batch
from training.ema import WeightEMA
from training.evaluate import DECODING, evaluate, evaluate_targets
from training.metrics import averaged
from training.settings import TrainSettings
from training.teacher import batch_targets, distillation_loss, soft_labels

log = logging.getLogger(__name__)
STATE_DIR = "train_state"
STATE_FILE = "state.pt"  # weights, optimizer, scheduler, epoch, RNG
OLD_WEIGHTS_FILE = "last.safetensors"  # the weights' own file in earlier runs


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_model(s: TrainSettings) -> tuple[FusedSLM, object]:
    from transformers import AutoTokenizer

    if s.init_from is not None:  # warm start: the checkpoint's own config, weights and tokenizer
        from lrsa.model import load_checkpoint

        log.info("starting from the weights of %s", s.init_from)
        return load_checkpoint(s.init_from)

    config = FusedSLMConfig(
        text_encoder=offline_models.resolve(s.text_encoder) if s.text_encoder else default_text_encoder(),
        rationale_encoder=s.rationale_encoder,
        fusion=s.fusion, max_text_len=s.max_text_len, max_rationale_len=s.max_rationale_len,
        max_description_len=s.max_description_len, modality_dropout=s.modality_dropout, dropout=s.dropout,
        inner_fusion_layers=s.inner_fusion_layers, sentiment_head=s.sentiment_head)
    return FusedSLM(config), AutoTokenizer.from_pretrained(config.text_encoder)


def _encoder_depth(name: str, layers: int) -> int:
    """Depth of an encoder parameter (BERT names): 0 for the embeddings, i + 1 for layer i, and
    the top (`layers`) for anything else."""
    parts = name.split(".")
    if parts[1:3] == ["encoder", "layer"]:
        return int(parts[3]) + 1
    return 0 if parts[1] == "embeddings" else layers


def _optimizer(model: FusedSLM, s: TrainSettings) -> torch.optim.Optimizer:
    """AdamW: the pretrained encoder at `lr` (each layer below the top scaled down by
    `layer_lr_decay`), the fresh layers at `lr * new_layer_lr_scale`."""
    layers = model.text_encoder.config.num_hidden_layers
    groups: dict[tuple[bool, float], list] = {}  # (fresh, lr): pretrained and fresh never share a group
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith(("text_encoder.", "memory_encoder.")):
            key = (False, s.lr * s.layer_lr_decay ** (layers - _encoder_depth(name, layers)))
        else:
            key = (True, s.lr * s.new_layer_lr_scale)
        groups.setdefault(key, []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": lr} for (_, lr), ps in groups.items()],
                             weight_decay=s.weight_decay)


class Trainer:
    def __init__(self, settings: TrainSettings, model: FusedSLM | None = None, tokenizer=None):
        from transformers import get_linear_schedule_with_warmup

        self.s = settings
        torch.set_num_threads(settings.threads)
        seed_everything(settings.seed)
        if model is None:
            model, tokenizer = build_model(settings)
        self.model, self.tokenizer = model, tokenizer
        self.train_parts, self.dev_sets = settings.load_each("train"), settings.load_each("dev")
        if settings.brand_posts:
            self.train_parts["brand_posts"] = brand_posts.examples(settings.brand_posts)
        if settings.dev_text_only:
            self.dev_sets = {name: [replace(ex, rationale=None, description=None) for ex in dev]
                             for name, dev in self.dev_sets.items()}
        self.train_set = [ex for part in self.train_parts.values() for ex in part]
        # targeted-sentiment tweets: a fresh draw of `tsa_per_epoch` each epoch, indexed after the posts
        self.tsa_pool = settings.load_tsa("train") if settings.tsa_ratio > 0 else []
        self.tsa_per_epoch = min(len(self.tsa_pool), round(settings.tsa_ratio * len(self.train_set)))
        self.tsa_dev = settings.load_tsa("dev")
        self.examples = self.train_set + self.tsa_pool
        self.steps_per_epoch = -(-(len(self.train_set) + self.tsa_per_epoch) // settings.batch_size)
        total = self.steps_per_epoch * settings.epochs
        self.optimizer = _optimizer(model, settings)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(settings.warmup_ratio * total), total)
        self.ema = WeightEMA(model, settings.ema_decay) if settings.ema_decay else None
        self.epoch, self.best_f1, self.bad_epochs, self.history = 0, -1.0, 0, []
        self.train_cache, self.dev_caches = None, {}
        self.teacher_labels: list | None = None  # per example of self.examples, when distilling

    # -- state -------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.s.out / STATE_DIR

    def save_state(self) -> None:
        """One file, written aside and swapped in whole: a kill mid-write keeps the previous
        epoch's state intact, and weights never pair with another epoch's optimizer or RNG."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with replaced_whole(self.state_dir / STATE_FILE) as tmp:
            torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "best_f1": self.best_f1,
                        "bad_epochs": self.bad_epochs, "history": self.history, "torch_rng": torch.get_rng_state(),
                        "numpy_rng": np.random.get_state(), "random_rng": random.getstate(),
                        "ema": self.ema and self.ema.state_dict()}, tmp)
        (self.state_dir / OLD_WEIGHTS_FILE).unlink(missing_ok=True)

    def try_resume(self) -> bool:
        path = self.state_dir / STATE_FILE
        if self.s.fresh or not path.exists():
            return False
        state = torch.load(path, weights_only=False)
        if "model" in state:
            self.model.load_state_dict(state["model"])
        else:  # written before the weights moved into the state file
            load_model(self.model, str(self.state_dir / OLD_WEIGHTS_FILE))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best_f1 = state["epoch"], state["best_f1"]
        self.bad_epochs, self.history = state["bad_epochs"], state["history"]
        if self.ema is not None and state.get("ema"):  # else: average from the resumed weights on
            self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["random_rng"])
        log.info("resumed from %s after epoch %d (best dev selection score %.2f)", path, self.epoch, self.best_f1)
        return True

    # -- loop ----------------------------------------------------------------------------

    def _build_caches(self) -> None:
        frozen = (self.model.config.fusion == "dual_cross_attention"
                  and self.model.config.rationale_encoder == "frozen")
        if frozen and self.train_cache is None:
            self.model.eval()

            def cache(examples: list) -> MemoryCache:
                return MemoryCache(self.model, self.tokenizer, examples, cache_dir=self.s.cache_dir)

            # per dataset, so that a joint run reuses each dataset's cached states
            parts = list(self.train_parts.values()) + ([self.tsa_pool] if self.tsa_pool else [])
            self.train_cache = MemoryCache.joined([cache(part) for part in parts])
            self.dev_caches = {name: cache(dev) for name, dev in self.dev_sets.items()}

    def _label_with_teacher(self) -> None:
        """The teacher's soft labels for every training example (self.examples' order)."""
        if self.s.teacher is not None and self.teacher_labels is None:
            parts = dict(self.train_parts)
            if self.tsa_pool:
                parts["targeted_sentiment"] = self.tsa_pool
            self.teacher_labels = soft_labels(self.s.teacher, parts, self.s.cache_dir, self.s.eval_batch_size,
                                              self.s.teacher_text_only)

    def _train_epoch(self) -> float:
        """One pass over the shuffled training set: its mean loss."""
        self.model.train()
        order = self._epoch_order()
        losses = []
        bar = tqdm(range(0, len(order), self.s.batch_size), desc=f"epoch {self.epoch + 1}/{self.s.epochs}",
                   unit="batch")
        for i in bar:
            idx = order[i:i + self.s.batch_size]
            part = [self.examples[j] for j in idx]
            tensors, first_token = make_batch(part, self.tokenizer, self.model.config, self.train_cache, idx)
            weights = torch.tensor([self.s.tsa_loss_weight if ex.partial else 1.0 for ex in part])
            labels = tensors.pop("labels")
            targets = (batch_targets([self.teacher_labels[j] for j in idx], first_token, (*labels.shape, NUM_LABELS))
                       if self.teacher_labels is not None else None)
            loss = self._loss(tensors, labels, weights, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        return float(np.mean(losses))

    def _epoch_order(self) -> list[int]:
        """This epoch's example indices, shuffled: every MABSA post and a fresh draw of the
        targeted-sentiment tweets (seeded by seed and epoch, so a resumed run draws the same)."""
        g = torch.Generator().manual_seed(self.s.seed + self.epoch)
        n = len(self.train_set)
        if not self.tsa_per_epoch:  # the order runs before targeted sentiment had
            return torch.randperm(n, generator=g).tolist()
        tsa = (torch.randperm(len(self.tsa_pool), generator=g)[: self.tsa_per_epoch] + n).tolist()
        chosen = torch.tensor(list(range(n)) + tsa, dtype=torch.long)
        return chosen[torch.randperm(len(chosen), generator=g)].tolist()

    def _tag_loss(self, logits: torch.Tensor, labels: torch.Tensor,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over the labelled words; `weights` [B] weighs each post's words (the
        mean is then weighted: sum(w * loss) / sum(w))."""
        per_token = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX,
                                    label_smoothing=self.s.label_smoothing, reduction="none")
        tagged = (labels != IGNORE_INDEX).flatten().float()
        w = tagged if weights is None else tagged * weights[:, None].expand_as(labels).flatten()
        return (per_token * w).sum() / w.sum().clamp_min(1e-9)

    def _loss(self, tensors: dict, labels: torch.Tensor, weights: torch.Tensor | None = None,
              targets: torch.Tensor | None = None) -> torch.Tensor:
        """The tag loss (mixed with the teacher's term where `targets` are given); with R-Drop,
        over two dropout draws of the batch (stacked into one forward pass) plus their symmetric
        KL divergence on the labelled tokens."""
        if targets is not None:
            logits = self.model(**tensors)
            a = self.s.teacher_weight
            return ((1 - a) * self._tag_loss(logits, labels, weights)
                    + a * distillation_loss(logits, targets, self.s.teacher_temperature, weights))
        if not self.s.rdrop_alpha:
            return self._tag_loss(self.model(**tensors), labels, weights)
        with self.model.copies_in_batch(2):
            first, second = self.model(**{k: torch.cat([v, v]) for k, v in tensors.items()}).chunk(2)
        tagged = labels != IGNORE_INDEX
        p, q = first[tagged].log_softmax(-1), second[tagged].log_softmax(-1)
        kl = (F.kl_div(p, q, log_target=True, reduction="batchmean")
              + F.kl_div(q, p, log_target=True, reduction="batchmean")) / 2
        return ((self._tag_loss(first, labels, weights) + self._tag_loss(second, labels, weights)) / 2
                + self.s.rdrop_alpha * kl)

    def _evaluated_weights(self) -> contextlib.AbstractContextManager:
        """The weights that are evaluated and saved: the moving average where one is kept."""
        return self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()

    def _evaluate_dev(self) -> dict[str, dict]:
        """Each dataset's dev metrics."""
        return {name: evaluate(self.model, self.tokenizer, dev, self.s.eval_batch_size, self.dev_caches.get(name))
                for name, dev in self.dev_sets.items()}

    def fit(self) -> dict:
        start = time.monotonic()
        self.try_resume()
        self._build_caches()
        self._label_with_teacher()
        stop_reason = "epochs"
        while self.epoch < self.s.epochs:
            t0 = time.monotonic()
            loss = self._train_epoch()
            train_s = time.monotonic() - t0
            with self._evaluated_weights():
                each = self._evaluate_dev()
                tsa_dev = (evaluate_targets(self.model, self.tokenizer, self.tsa_dev, self.s.eval_batch_size)
                           if self.tsa_dev else None)
                dev = averaged(list(each.values()))  # one dataset: its own scores
                f1 = dev["jmasa"]["f1"]
                score = selection_score(self.s.select_on, dev, tsa_dev)
                if improved := score > self.best_f1:
                    save_checkpoint(self.s.out, self.model, self.tokenizer)
            self.epoch += 1
            entry = {"epoch": self.epoch, "loss": loss, "dev": dev, "selection_score": score, "train_seconds": train_s,
                     "eval_seconds": time.monotonic() - t0 - train_s}
            if len(each) > 1:
                entry["dev_by_dataset"] = each
            if tsa_dev:
                entry["tsa_dev"] = tsa_dev
                log.info("  targeted sentiment dev: acc %.2f, macro-F1 %.2f, recall NEG %.1f NEU %.1f POS %.1f",
                         tsa_dev["accuracy"], tsa_dev["macro_f1"], tsa_dev["recall_neg"], tsa_dev["recall_neu"],
                         tsa_dev["recall_pos"])
            self.history.append(entry)
            log.info("epoch %d: loss %.4f, dev JMASA F1 %.2f, MATE F1 %.2f, MASC acc %.2f (%.0f s)",
                     self.epoch, loss, f1, dev["mate"]["f1"], dev["masc"]["accuracy"], time.monotonic() - t0)
            for name, scores in entry.get("dev_by_dataset", {}).items():
                log.info("  %s: dev JMASA F1 %.2f, MATE F1 %.2f, MASC acc %.2f", name, scores["jmasa"]["f1"],
                         scores["mate"]["f1"], scores["masc"]["accuracy"])
            if improved:
                self.best_f1, self.bad_epochs = score, 0
            else:
                self.bad_epochs += 1
            self.save_state()
            if self.epoch < self.s.epochs and self.bad_epochs < self.s.patience:
                per_epoch = np.mean([h["train_seconds"] + h["eval_seconds"] for h in self.history])
                log.info("epoch %d/%d done; about %.0f min left for the other %d (at this run's mean %.0f s an "
                         "epoch; early stopping may end it sooner)", self.epoch, self.s.epochs,
                         per_epoch * (self.s.epochs - self.epoch) / 60, self.s.epochs - self.epoch, per_epoch)
            if self.bad_epochs >= self.s.patience:
                stop_reason = "early stopping"
                break
        calibration = self._calibrate() if self.s.calibrate else None
        return self._write_metrics(time.monotonic() - start, stop_reason, calibration)

    def _calibrate(self) -> dict | None:
        """Fit the best checkpoint's confidence calibration on dev and store it with it."""
        from lrsa.model import CONFIG_FILE, load_checkpoint
        from training.calibrate import aspect_outcomes, calibration_report, store_calibration

        if not (self.s.out / CONFIG_FILE).exists():
            return None
        best, tokenizer = load_checkpoint(self.s.out)
        outcomes = [post for name, dev in self.dev_sets.items()
                    for post in aspect_outcomes(best, tokenizer, dev, self.s.eval_batch_size,
                                                self.dev_caches.get(name))]
        calibration, report = calibration_report(outcomes)
        store_calibration(self.s.out, calibration)
        log.info("confidence calibration on dev: ECE %.3f raw, %.3f calibrated (cross-fitted)",
                 report["ece_before"], report["ece_after"])
        return report

    def _write_metrics(self, seconds: float, stop_reason: str, calibration: dict | None = None) -> dict:
        best = max(self.history, key=lambda h: h.get("selection_score", h["dev"]["jmasa"]["f1"])) \
            if self.history else None
        result = {"dataset": self.s.dataset, "best_epoch": best and best["epoch"], "select_on": self.s.select_on,
                  "dev": best and best["dev"], "decoding": DECODING, "stop_reason": stop_reason, "seconds_this_run": seconds,
                  "train_seconds_total": sum(h["train_seconds"] + h["eval_seconds"] for h in self.history),
                  "history": self.history, "settings": json.loads(self.s.model_dump_json())}
        if calibration:
            result["calibration"] = calibration
        for key in ("dev_by_dataset", "tsa_dev"):
            if best and key in best:
                result[key] = best[key]
        self.s.out.mkdir(parents=True, exist_ok=True)
        with replaced_whole(self.s.out / "metrics.json") as tmp:  # its presence marks a finished run
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        return result


def selection_score(select_on: str, dev: dict, tsa_dev: dict | None) -> float:
    """The dev score a checkpoint is chosen (and training stopped early) on."""
    if select_on == "jmasa_tsa" and tsa_dev:
        return (dev["jmasa"]["f1"] + tsa_dev["macro_f1"]) / 2
    return dev["jmasa"]["f1"]


def train(settings: TrainSettings) -> dict:
    """Train with `settings`; returns (and writes to OUT/metrics.json) the best dev metrics."""
    return Trainer(settings).fit()
