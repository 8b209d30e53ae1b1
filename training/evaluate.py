"""Evaluation of a fused-SLM checkpoint on a MABSA split: JMASA, MATE and MASC."""

from __future__ import annotations

import logging
import time

import torch
from tqdm import tqdm

from lrsa.labels import decode_spans, span_sentiment
from lrsa.predict import word_probabilities
from training.data import Example, MemoryCache, make_batch
from training.metrics import mabsa_metrics
from training.settings import EvalSettings

log = logging.getLogger(__name__)

# How predicted spans are read from the tag probabilities, recorded with each run's metrics.
# Runs without the field (before 2026-12-03) took each word's likeliest tag ("argmax").
DECODING = "span-first"


@torch.no_grad()
def predict_examples(model, tokenizer, examples: list[Example], batch_size: int = 64,
                     cache: MemoryCache | None = None, progress: bool = True
                     ) -> tuple[list[list[tuple[int, int, str]]], list[list[str]]]:
    """Per post: the predicted (start, end, sentiment) spans, and the predicted sentiment of
    each gold aspect (for MASC)."""
    was_training = model.training
    model.eval()
    pred, gold_sents = [], []
    for i in tqdm(range(0, len(examples), batch_size), desc="evaluating", unit="batch",
                  leave=False, disable=not progress):
        part = examples[i:i + batch_size]
        tensors, first_token = make_batch(part, tokenizer, model.config, cache,
                                          list(range(i, i + len(part))))
        tensors.pop("labels")
        logits = model(**tensors)
        for row, ex, firsts in zip(logits, part, first_token):
            probs = word_probabilities(row, firsts)
            spans = decode_spans(probs)
            pred.append([(s.start, s.end, s.sentiment) for s in spans])
            gold_sents.append([span_sentiment(probs, s, e)[0] for s, e, _ in ex.spans])
    model.train(was_training)
    return pred, gold_sents


def evaluate(model, tokenizer, examples: list[Example], batch_size: int = 64,
             cache: MemoryCache | None = None, progress: bool = True) -> dict:
    pred, gold_sents = predict_examples(model, tokenizer, examples, batch_size, cache, progress)
    return mabsa_metrics([e.spans for e in examples], pred, gold_sents)


def run_eval(settings: EvalSettings) -> dict:
    from lrsa.model import load_checkpoint

    torch.set_num_threads(settings.threads)
    model, tokenizer = load_checkpoint(settings.checkpoint)
    examples = settings.load(settings.split)
    start = time.perf_counter()
    metrics = evaluate(model, tokenizer, examples, settings.batch_size)
    log.info("evaluated %d posts in %.1f s", len(examples), time.perf_counter() - start)
    return {"dataset": settings.dataset, "split": settings.split, "checkpoint": str(settings.checkpoint),
            "posts": len(examples), "decoding": DECODING, **metrics}
