"""The rationale engine: posts in, one short rationale per post out (LRSA's LLM step).

A rationale explains the post's text, naming its aspects and the sentiment toward each; when a
vision-language model is configured and the post has an image, a description of the image comes
with it. Generation goes through the continuous batcher; a bounded cache answers retweets and
copies without generating again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lrsa.rationale.batcher import BatchStats, ContinuousBatcher
from lrsa.rationale.cache import CacheStats, RationaleCache, cache_key
from lrsa.rationale.config import RationaleSettings
from lrsa.rationale.loading import LoadedModel, load_model
from lrsa.rationale.prompts import finish, get_template, label_token_bias, render, text_messages
from lrsa.rationale.vision import ImageDescriber

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RationaleRequest:
    text: str
    image: bytes | None = None  # the image's bytes, when the post has one


@dataclass(frozen=True)
class Rationale:
    text: str
    image_description: str | None = None
    new_tokens: int = 0
    cached: bool = False


@dataclass
class EngineTotals:
    """Running totals since start (the worker pool turns them into metrics)."""

    posts: int = 0
    generated: int = 0
    new_tokens: int = 0
    prompt_tokens: int = 0
    prefill_tokens: int = 0  # prompt tokens run through the LLM; the rest came from the shared prefix
    generation_s: float = 0.0


class RationaleEngine:
    """One LLM (+ optional VLM), its batcher and its cache. Not thread-safe for concurrent
    `generate` calls (a lock serialises them): one engine per actor/process."""

    def __init__(self, settings: RationaleSettings | None = None, loaded: LoadedModel | None = None,
                 describer: ImageDescriber | None = None) -> None:
        self.settings = s = settings or RationaleSettings()
        if s.threads:
            torch.set_num_threads(s.threads)
        device = s.resolved_device()
        self.loaded = loaded or load_model(s.model, device=device, dtype=s.dtype, cache_dir=s.model_cache_dir)
        self.tokenizer = self.loaded.tokenizer
        self.batcher = ContinuousBatcher(
            self.loaded.model, slots=s.slots, max_len=s.max_len, eos_token_ids=self._eos_ids(),
            cuda_graphs=s.cuda_graphs, compile=s.compile,
            token_bias=label_token_bias(self.tokenizer, get_template(s.prompt_version).label_bias))
        self.describer = describer or (ImageDescriber(s.vlm_model, device, s.dtype) if s.vlm_model else None)
        self.cache: RationaleCache[Rationale] = RationaleCache(s.cache_size)
        self.totals = EngineTotals()
        self.last_batch: BatchStats | None = None
        self._lock = threading.Lock()

    def _eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = self.loaded.model.generation_config.eos_token_id
        ids |= set(gen_eos) if isinstance(gen_eos, list) else {gen_eos}
        return sorted(i for i in ids if i is not None)

    def versions(self) -> dict[str, str]:
        v = {"rationale_llm": self.settings.model, "rationale_prompt": self.settings.prompt_version}
        if self.describer:
            v["image_vlm"] = self.settings.vlm_model
        return v

    def cache_stats(self) -> CacheStats:
        return self.cache.stats()

    def warmup(self) -> None:
        """Capture/compile the decode step before the first real batch (no-op cost on CPU)."""
        self.batcher.warmup()

    def generate(self, requests: Sequence[RationaleRequest]) -> list[Rationale]:
        """One rationale per request, in order; cached and duplicate posts are generated once."""
        with self._lock:
            keys = [cache_key(r.text, self._image_of(r)) for r in requests]
            found = {k: hit for k in dict.fromkeys(keys) if (hit := self.cache.get(k)) is not None}
            todo = {k: r for k, r in zip(keys, requests) if k not in found}  # first request per new key
            fresh = self._generate(list(todo.values())) if todo else []
            for k, rationale in zip(todo, fresh):
                self.cache.put(k, rationale)
            self.totals.posts += len(requests)
            made = dict(zip(todo, fresh))
            out = []
            for k in keys:  # a key's first occurrence carries its generation; copies are "cached"
                out.append(made.pop(k) if k in made else _as_cached(found.get(k) or out[keys.index(k)]))
            return out

    def _image_of(self, r: RationaleRequest) -> bytes | None:
        return r.image if self.describer else None  # without a VLM the image cannot change the rationale

    def _generate(self, requests: list[RationaleRequest]) -> list[Rationale]:
        prompts = [render(self.tokenizer, text_messages(r.text, self.settings.prompt_version)) for r in requests]
        tokens, stats = self.batcher.run(prompts, self.settings.max_new_tokens)
        texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        images = self._describe(requests)
        self.last_batch = stats
        self.totals.generated += len(requests)
        self.totals.new_tokens += stats.new_tokens
        self.totals.prompt_tokens += stats.prompt_tokens
        self.totals.prefill_tokens += stats.prefill_tokens
        self.totals.generation_s += stats.seconds
        log.debug("generated %d rationales, %d tokens in %.2f s", len(requests), stats.new_tokens, stats.seconds)
        version = self.settings.prompt_version
        return [Rationale(finish(t, r.text, version), img, len(tok))
                for t, r, img, tok in zip(texts, requests, images, tokens)]

    def _describe(self, requests: list[RationaleRequest]) -> list[str | None]:
        if not self.describer:
            return [None] * len(requests)
        with_image = [i for i, r in enumerate(requests) if r.image]
        out: list[str | None] = [None] * len(requests)
        if with_image:
            described = self.describer.describe([requests[i] for i in with_image], self.settings.prompt_version)
            for i, d in zip(with_image, described):
                out[i] = d
        return out


def _as_cached(r: Rationale) -> Rationale:
    return Rationale(r.text, r.image_description, 0, cached=True)
