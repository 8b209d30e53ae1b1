"""A bounded LRU of rationales keyed by the normalised post text (+ image hash).

Retweets and copy-pasted posts are common in social streams; they differ only in the "RT @user:"
prefix, mentions, links, case and spacing, none of which changes the rationale much.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")

_RT = re.compile(r"^\s*rt\s+@\s*\w+\s*:?\s*", re.IGNORECASE)
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_MENTION = re.compile(r"@\s*\w+")
_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Lower-case, drop a leading retweet marker, links and @mentions, collapse whitespace."""
    text = _RT.sub("", text)
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    return _SPACE.sub(" ", text).strip().lower()


def image_hash(data: bytes | None) -> str:
    return hashlib.sha256(data).hexdigest()[:32] if data else ""


def cache_key(text: str, image: bytes | None = None) -> str:
    return f"{image_hash(image)}|{normalise_text(text)}"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    size: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class RationaleCache(Generic[V]):
    """Thread-safe LRU with hit/miss/eviction counters; capacity 0 disables it."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def get(self, key: str) -> V | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self._stats.hits += 1
                return self._items[key]
            self._stats.misses += 1
            return None

    def put(self, key: str, value: V) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
                self._stats.evictions += 1

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._stats.hits, self._stats.misses, self._stats.evictions, len(self._items))

    def __len__(self) -> int:
        return len(self._items)
