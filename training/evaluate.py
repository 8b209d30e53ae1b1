"""Evaluation of a fused-SLM checkpoint: JMASA, MATE and MASC on a MABSA split, and target
sentiment on the targeted-sentiment dev split (training/tsa.py)."""

from __future__ import annotations

import logging
import time

import torch
from tqdm import tqdm

from lrsa.labels import Span, decode_spans, span_sentiment, words_sentiment
from lrsa.predict import word_probabilities
from training.data import Example, MemoryCache, make_batch
from training.metrics import mabsa_metrics, masc
from training.settings import EvalSettings

log = logging.getLogger(__name__)

# How predicted spans are read from the tag probabilities, recorded with each run's metrics.
# Runs without the field (before 2026-12-03) took each word's likeliest tag ("argmax").
DECODING = "span-first"


@torch.no_grad()
def predict_spans(model, tokenizer, examples: list[Example], batch_size: int = 64,
                  cache: MemoryCache | None = None, progress: bool = True
                  ) -> tuple[list[list[Span]], list[list[str]]]:
    """Per post: the decoded spans (with their confidence), and the predicted sentiment of each
    gold aspect (for MASC)."""
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
            pred.append(decode_spans(probs))
            gold_sents.append([span_sentiment(probs, s, e)[0] for s, e, _ in ex.spans])
    model.train(was_training)
    return pred, gold_sents


def predict_examples(model, tokenizer, examples: list[Example], batch_size: int = 64,
                     cache: MemoryCache | None = None, progress: bool = True
                     ) -> tuple[list[list[tuple[int, int, str]]], list[list[str]]]:
    """`predict_spans` with each span as (start, end, sentiment)."""
    pred, gold_sents = predict_spans(model, tokenizer, examples, batch_size, cache, progress)
    return [[(s.start, s.end, s.sentiment) for s in spans] for spans in pred], gold_sents


def evaluate(model, tokenizer, examples: list[Example], batch_size: int = 64,
             cache: MemoryCache | None = None, progress: bool = True) -> dict:
    pred, gold_sents = predict_examples(model, tokenizer, examples, batch_size, cache, progress)
    return mabsa_metrics([e.spans for e in examples], pred, gold_sents)


@torch.no_grad()
def evaluate_targets(model, tokenizer, examples: list[Example], batch_size: int = 64,
                     progress: bool = True) -> dict:
    """Targeted sentiment, one label per tweet: the sentiment read over all the words of all its
    target's mentions (as `span_sentiment` reads one span), scored by `masc`: accuracy,
    macro-F1 and per-class recall."""
    was_training = model.training
    model.eval()
    pred = []
    for i in tqdm(range(0, len(examples), batch_size), desc="targeted sentiment", unit="batch",
                  leave=False, disable=not progress):
        part = examples[i:i + batch_size]
        tensors, first_token = make_batch(part, tokenizer, model.config)
        tensors.pop("labels")
        for row, ex, firsts in zip(model(**tensors), part, first_token):
            words = [w for start, end, _ in ex.spans for w in range(start, end)]
            pred.append(words_sentiment(word_probabilities(row, firsts), words)[0])
    model.train(was_training)
    return {"posts": len(examples), **masc([ex.spans[0][2] for ex in examples], pred)}


def run_eval(settings: EvalSettings) -> dict:
    from lrsa.model import load_checkpoint

    torch.set_num_threads(settings.threads)
    model, tokenizer = load_checkpoint(settings.checkpoint)
    examples = settings.load(settings.split)
    start = time.perf_counter()
    metrics = evaluate(model, tokenizer, examples, settings.batch_size)
    log.info("evaluated %d posts in %.1f s", len(examples), time.perf_counter() - start)
    result = {"dataset": settings.dataset, "split": settings.split, "checkpoint": str(settings.checkpoint),
              "posts": len(examples), "decoding": DECODING, **metrics}
    if settings.split == "dev" and (targets := settings.load_tsa("dev")):
        result["tsa_dev"] = evaluate_targets(model, tokenizer, targets, settings.batch_size)
    return result
