"""MABSA benchmark loaders: Twitter-2015/2017 tweets joined with their LLM rationales.

Layout (see ../shared/data/mabsa/README.md): `<dataset>/<split>.json` holds the tweets with
aspect spans; `rationales/<dataset>/<split>.json` one LLM record per (tweet, aspect) with the
image `description` and a per-aspect `reason`. A post gets one image description and one
post-level text rationale: its aspects' reasons joined. Alternatively the text rationale comes
from a JSONL file written by the rationale batch job (`{"image_id", "rationale", ...}`).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from training.atomic import replaced_whole

log = logging.getLogger(__name__)

DATASETS = ("twitter2015", "twitter2017")
RationaleSource = Literal["reasons", "reasons_masked", "none"]
MASK_TERM = "[the aspect]"


@dataclass
class Example:
    words: list[str]
    image_id: str
    spans: list[tuple[int, int, str]]  # (first word, end word exclusive, POS/NEU/NEG)
    description: str | None = None  # the LLM's image description: stands in for the image
    rationale: str | None = None  # post-level text rationale
    terms: list[str] = field(default_factory=list)  # gold aspect terms (for masking them)
    # True: only the spans are labelled (targeted-sentiment data); other words are not "O" but
    # unknown, so the loss ignores them. False: every word outside the spans is "O".
    partial: bool = False


def _stem(image_id: str) -> str:
    return image_id[:-4] if image_id.endswith(".jpg") else image_id


def _first_sentences(text: str, n: int = 2) -> str:
    """The reasons open with the LLM's verdict and its gist; keep that so several fit."""
    parts = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    return " ".join(parts[:n])


def _mask_terms(text: str, terms: Iterable[str]) -> str:
    for term in sorted(terms, key=len, reverse=True):
        text = re.sub(re.escape(term), MASK_TERM, text, flags=re.IGNORECASE)
    return text


def _records_for(tweet: dict, records: list[dict]) -> list[dict]:
    """The rationale records of this tweet (image ids repeat rarely: then match the text)."""
    if len({r["text"] for r in records}) <= 1:
        return records
    words = " ".join(tweet["words"])
    return [r for r in records if " ".join(r["text"].replace("$T$", r["target"]).split()) == words]


def load_split(data_dir: str | Path, dataset: str, split: str,
               rationale_source: RationaleSource = "reasons", use_description: bool = True,
               rationale_file: str | Path | None = None, limit: int | None = None) -> list[Example]:
    """Tweets of one split with their description and post-level rationale attached.

    rationale_source: "reasons" joins the per-aspect reasons; "reasons_masked" does the same
    with the gold aspect terms replaced by a placeholder (the reasons were generated per gold
    aspect and name it, so they leak gold aspects); "none" gives no text rationale.
    rationale_file: JSONL from the rationale batch job; overrides rationale_source.
    """
    data_dir = Path(data_dir)
    tweets = json.loads((data_dir / dataset / f"{split}.json").read_text())
    if limit:
        tweets = tweets[:limit]
    by_image: dict[str, list[dict]] = defaultdict(list)
    rationale_path = data_dir / "rationales" / dataset / f"{split}.json"
    if rationale_path.exists():
        for rec in json.loads(rationale_path.read_text()):
            by_image[rec["ImageID"]].append(rec)
    else:
        log.warning("no rationales at %s: posts get no description or reasons", rationale_path)
    from_file = load_rationale_file(rationale_file) if rationale_file else None

    examples = []
    for t in tweets:
        spans = [(a["from"], a["to"], a["polarity"]) for a in t["aspects"]]
        terms = [" ".join(a["term"]) for a in t["aspects"]]
        records = _records_for(t, by_image.get(_stem(t["image_id"]), []))
        ex = Example(words=t["words"], image_id=t["image_id"], spans=spans, terms=terms)
        if use_description and records:
            ex.description = " ".join(records[0]["description"].split())
        if from_file is not None:
            ex.rationale = from_file.get(_stem(t["image_id"]))
        elif rationale_source != "none" and records:
            ex.rationale = " | ".join(_first_sentences(r["reason"]) for r in records)
            if rationale_source == "reasons_masked":
                ex.rationale = _mask_terms(ex.rationale, terms)
        examples.append(ex)
    _log_coverage(dataset, split, examples)
    return examples


def load_rationale_file(path: str | Path) -> dict[str, str]:
    """image_id (without .jpg) -> rationale, from the batch job's JSONL."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                if rec.get("rationale"):
                    out[_stem(str(rec["image_id"]))] = rec["rationale"]
    return out


def _log_coverage(dataset: str, split: str, examples: list[Example]) -> None:
    n = len(examples)
    log.info("%s/%s: %d posts, %d aspects, %d with rationale, %d with description", dataset, split, n,
             sum(len(e.spans) for e in examples), sum(e.rationale is not None for e in examples),
             sum(e.description is not None for e in examples))


# --------------------------------------------------------------------------- batching

def make_batch(examples: list[Example], tokenizer, config, cache: MemoryCache | None = None,
               indices: list[int] | None = None) -> tuple[dict, list[list[int]]]:
    """Model inputs (+ "labels" [B, T]: the tag of each word's first sub-word, IGNORE_INDEX
    elsewhere) for a list of examples, and each word's first-token index. With a cache, the
    frozen memory encoder's states replace the rationale/description ids."""
    import torch

    from lrsa.labels import IGNORE_INDEX, spans_to_tags
    from lrsa.predict import encode_words

    tensors, first_token = encode_words(tokenizer, config, [e.words for e in examples],
                                        [e.rationale for e in examples],
                                        [e.description for e in examples])
    labels = torch.full_like(tensors["input_ids"], IGNORE_INDEX)
    for row, (ex, firsts) in enumerate(zip(examples, first_token)):
        inside = {w for start, end, _ in ex.spans for w in range(start, end)}
        for word, tag in enumerate(spans_to_tags(len(ex.words), ex.spans)):
            if firsts[word] >= 0 and (word in inside or not ex.partial):
                labels[row, firsts[word]] = tag
    tensors["labels"] = labels
    if cache is not None and indices is not None:
        for name, states in (("rationale", cache.rationale), ("image_desc", cache.description)):
            ids = tensors.pop(f"{name}_ids")
            tensors[f"{name}_states"] = cache.padded([states[i] for i in indices], ids.shape[1])
    return tensors, first_token


class MemoryCache:
    """Per-example token states of the rationale and description from a FROZEN memory encoder:
    computed once (and kept on disk under `cache_dir`, keyed by encoder, length and texts, so
    other runs on the same data reuse them), they make an epoch nearly as cheap as text-only."""

    def __init__(self, model, tokenizer, examples: list[Example], batch_size: int = 64,
                 cache_dir: Path | None = None):
        config = model.config
        self.rationale = self._stream(model, tokenizer, [e.rationale for e in examples],
                                      config.max_rationale_len, batch_size, cache_dir)
        self.description = self._stream(model, tokenizer, [e.description for e in examples],
                                        config.max_description_len, batch_size, cache_dir)

    @classmethod
    def joined(cls, parts: list[MemoryCache]) -> MemoryCache:
        """The caches of consecutive example lists as one (each part keeps its own disk file)."""
        cache = cls.__new__(cls)
        cache.rationale = [s for p in parts for s in p.rationale]
        cache.description = [s for p in parts for s in p.description]
        return cache

    @staticmethod
    def _stream(model, tokenizer, texts: list[str | None], max_len: int, batch_size: int,
                cache_dir: Path | None) -> list:
        import hashlib

        import torch
        from tqdm import tqdm

        from lrsa.predict import encode_stream

        depths = model.memory_depths
        spec = [model.config.text_encoder, max_len, texts] + ([depths] if len(depths) > 1 else [])
        key = hashlib.sha1(json.dumps(spec).encode()).hexdigest()
        path = Path(cache_dir) / f"memory-{key[:16]}.pt" if cache_dir else None
        if path and path.exists():
            log.info("memory states from %s", path)
            return torch.load(path)
        # an absent text is an empty state: only the present ones go through the encoder
        present = [i for i, t in enumerate(texts) if t and t.strip()]
        with torch.no_grad():
            dim = model.encode_memory(*encode_stream(tokenizer, ["x"], max_len)).shape[-1]
            states: list[torch.Tensor] = [torch.zeros(0, dim, dtype=torch.float16)] * len(texts)
            for i in tqdm(range(0, len(present), batch_size), desc="caching rationale states", unit="batch",
                          leave=False):
                rows = present[i:i + batch_size]
                ids, mask = encode_stream(tokenizer, [texts[r] for r in rows], max_len)
                out = model.encode_memory(ids, mask).half()
                for r, s, m in zip(rows, out, mask):
                    states[r] = s[: int(m.sum())].clone()
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            with replaced_whole(path) as tmp:  # concurrent runs read it whole or not at all
                torch.save(states, tmp)
        return states

    @staticmethod
    def padded(states: list, width: int):
        import torch

        dim = states[0].shape[-1]
        out = torch.zeros(len(states), width, dim)
        for row, s in enumerate(states):
            out[row, : s.shape[0]] = s.float()
        return out
