"""Pre- and post-processing around the fused SLM, and the in-process PyTorch predictor.

The three steps can run in different places (e.g. encode/decode in a Triton client, forward
in the server):

    tensors, meta = encode_batch(tokenizer, config, texts, rationales, image_descriptions)
    logits = model(**tensors)                      # [B, T, NUM_LABELS]
    aspects = decode_batch(logits, meta, texts)    # list[list[lrsa.schemas.Aspect]]

Tensor names (all int64, [B, length], padded to the longest in the batch):
input_ids, attention_mask (the post), rationale_ids, rationale_mask (the LLM rationale),
image_desc_ids, image_desc_mask (the LLM image description). A missing rationale or
description is a row whose mask is all zeros. `meta` holds, per post, the words with their
character offsets and the token index of each word's first sub-word: the model tags that token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from lrsa.calibration import ConfidenceCalibration
from lrsa.labels import LABEL_TO_ID, NUM_LABELS, SENTIMENT_NAMES, Span, decode_spans, span_sentiment
from lrsa.model import FusedSLM, FusedSLMConfig, load_checkpoint
from lrsa.schemas import Aspect
from lrsa.text import name_bounds, tokenize_words

TENSOR_NAMES = ("input_ids", "attention_mask", "rationale_ids", "rationale_mask",
                "image_desc_ids", "image_desc_mask")


@dataclass
class PostMeta:
    words: list[tuple[str, int, int]]  # (word, start, end) character offsets in the raw text
    first_token: list[int]  # per word, its first sub-word's token index; -1 if truncated away
    truncated: bool = False  # the text was cut to the model's token limit (max_text_len)


def encode_words(
    tokenizer: PreTrainedTokenizerBase,
    config: FusedSLMConfig,
    words: Sequence[Sequence[str]],
    rationales: Sequence[str | None] | None = None,
    image_descriptions: Sequence[str | None] | None = None,
) -> tuple[dict[str, torch.Tensor], list[list[int]]]:
    """Tokenise pre-split posts (as in the datasets) plus their rationale streams.

    Returns the tensors and, per post, each word's first sub-word token index (-1 when the
    post was truncated before that word)."""
    enc = tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True,
                    max_length=config.max_text_len, padding=True, return_tensors="pt")
    first_token = [_first_tokens(enc.word_ids(i), len(w)) for i, w in enumerate(words)]
    tensors = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    n = len(words)
    tensors["rationale_ids"], tensors["rationale_mask"] = encode_stream(
        tokenizer, rationales or [None] * n, config.max_rationale_len)
    tensors["image_desc_ids"], tensors["image_desc_mask"] = encode_stream(
        tokenizer, image_descriptions or [None] * n, config.max_description_len)
    return tensors, first_token


def _first_tokens(word_ids: list[int | None], num_words: int) -> list[int]:
    first = [-1] * num_words
    for token, word in enumerate(word_ids):
        if word is not None and first[word] == -1:
            first[word] = token
    return first


def encode_stream(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str | None],
                   max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask of an optional text per post; absent (None or blank) -> zero mask."""
    present = [bool(t and t.strip()) for t in texts]
    enc = tokenizer([t if p else "" for t, p in zip(texts, present)], truncation=True,
                    max_length=max_len, padding=True, return_tensors="pt")
    mask = enc["attention_mask"] * torch.tensor(present, dtype=torch.long)[:, None]
    return enc["input_ids"], mask


def encode_batch(
    tokenizer: PreTrainedTokenizerBase,
    config: FusedSLMConfig,
    texts: Sequence[str],
    rationales: Sequence[str | None] | None = None,
    image_descriptions: Sequence[str | None] | None = None,
    return_tensors: str = "pt",
) -> tuple[dict[str, torch.Tensor | np.ndarray], list[PostMeta]]:
    """Raw posts -> model input tensors ("pt" or "np") and per-post meta for decode_batch."""
    words = [tokenize_words(t) for t in texts]
    tensors, first_token = encode_words(tokenizer, config, [[w for w, _, _ in ws] for ws in words],
                                        rationales, image_descriptions)
    cut = _truncated(tokenizer, config, [[w for w, _, _ in ws] for ws in words], tensors["attention_mask"])
    if return_tensors == "np":
        tensors = {k: v.numpy() for k, v in tensors.items()}
    return tensors, [PostMeta(ws, ft, c) for ws, ft, c in zip(words, first_token, cut)]


def _truncated(tokenizer: PreTrainedTokenizerBase, config: FusedSLMConfig, words: Sequence[Sequence[str]],
               attention_mask: torch.Tensor) -> list[bool]:
    """Per post, whether its tokens did not fit max_text_len. Only posts that fill the limit
    exactly are tokenised again, untruncated, to tell "fits exactly" from "was cut"."""
    full = (attention_mask.sum(dim=1) >= config.max_text_len).tolist()
    out = [False] * len(words)
    for i, at_limit in enumerate(full):
        if at_limit and words[i]:
            ids = tokenizer(list(words[i]), is_split_into_words=True, truncation=False)["input_ids"]
            out[i] = len(ids) > config.max_text_len
    return out


def first_subwords(first_token: Sequence[int]) -> tuple[list[int], list[int]]:
    """(words kept, their first sub-word's token index): a word the tokenizer's length limit
    truncated away has first_token -1 and is left out. Shared by decoding and the teacher's labels."""
    kept = [i for i, t in enumerate(first_token) if t >= 0]
    return kept, [first_token[i] for i in kept]


def word_probabilities(logits: torch.Tensor | np.ndarray, first_token: Sequence[int]) -> np.ndarray:
    """Tag probabilities per word [num_words, NUM_LABELS] from one post's token logits [T, L].
    A word truncated away gets a certain "O"."""
    logits = np.asarray(logits.detach().float().cpu() if isinstance(logits, torch.Tensor) else logits,
                        dtype=np.float32)
    z = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    out = np.zeros((len(first_token), NUM_LABELS), dtype=np.float32)
    out[:, LABEL_TO_ID["O"]] = 1.0
    kept, tokens = first_subwords(first_token)
    out[kept] = probs[tokens]
    return out


def decode_batch(logits: torch.Tensor | np.ndarray, meta: Sequence[PostMeta],
                 texts: Sequence[str], calibration: ConfidenceCalibration | None = None) -> list[list[Aspect]]:
    """Tag logits [B, T, NUM_LABELS] -> per post, its aspects with character offsets into the
    raw text, sentiment and confidence (see `lrsa.labels.decode_spans`; read through the
    checkpoint's `calibration` where it has one)."""
    results = []
    for row, m, text in zip(logits, meta, texts):
        probs = word_probabilities(row, m.first_token)
        aspects = []
        for start, end, sentiment, raw in whole_name_spans(decode_spans(probs), m.words, text, probs):
            confidence = calibration(raw) if calibration else raw
            aspects.append(Aspect(term=text[start:end], start=start, end=end,
                                  sentiment=SENTIMENT_NAMES[sentiment],
                                  confidence=min(max(confidence, 0.0), 1.0)))
        results.append(aspects)
    return results


def whole_name_spans(spans: Sequence[Span], words: Sequence[tuple[str, int, int]], text: str,
                     probs: np.ndarray) -> list[tuple[int, int, str, float]]:
    """Word spans as character spans (start, end, sentiment, confidence), each widened to the
    whole name it is part of (lrsa.text.name_bounds: the tokenizer cuts "Chick-fil-A" into five
    words, and the tagger may mark only some of them). Spans that then overlap become one, whose
    sentiment is read over all its words (lrsa.labels.span_sentiment) and whose confidence is the
    mean of its parts'."""
    merged: list[list] = []  # [start, end, first word, end word, confidences]
    for span in spans:
        start, end = name_bounds(text, words[span.start][1], words[span.end - 1][2])
        inside = [i for i, (_, s, e) in enumerate(words) if s >= start and e <= end]
        first, last = (inside[0], inside[-1] + 1) if inside else (span.start, span.end)
        if merged and start < merged[-1][1]:
            prev = merged[-1]
            prev[0], prev[1] = min(prev[0], start), max(prev[1], end)
            prev[2], prev[3] = min(prev[2], first), max(prev[3], last)
            prev[4].append(span.confidence)
        else:
            merged.append([start, end, first, last, [span.confidence]])
    out = []
    for start, end, first, last, confidences in merged:
        sentiment, _ = span_sentiment(probs, first, last)
        out.append((start, end, sentiment, float(np.mean(confidences))))
    return out


class Predictor:
    """In-process PyTorch inference: raw posts (+ optional rationales) -> aspects."""

    def __init__(self, model: FusedSLM, tokenizer: PreTrainedTokenizerBase, device: str = "cpu"):
        self.model, self.tokenizer, self.device = model.eval(), tokenizer, device
        self.calibration = ConfidenceCalibration.from_dict(model.config.confidence_calibration)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, device: str = "cpu") -> Predictor:
        model, tokenizer = load_checkpoint(directory, device)
        return cls(model, tokenizer, device)

    @torch.inference_mode()
    def predict(self, texts: Sequence[str], rationales: Sequence[str | None] | None = None,
                image_descriptions: Sequence[str | None] | None = None,
                batch_size: int = 32) -> list[list[Aspect]]:
        out: list[list[Aspect]] = []
        for i in range(0, len(texts), batch_size):
            part = slice(i, i + batch_size)
            tensors, meta = encode_batch(self.tokenizer, self.model.config, texts[part],
                                         rationales[part] if rationales else None,
                                         image_descriptions[part] if image_descriptions else None)
            logits = self.model(**{k: v.to(self.device) for k, v in tensors.items()})
            out.extend(decode_batch(logits, meta, texts[part], self.calibration))
        return out
