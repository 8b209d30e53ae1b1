"""Rationale cache: normalised keys (retweets and copies meet), bounded LRU, hit/miss counters."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from lrsa.rationale.cache import RationaleCache, cache_key, normalise_text


def test_retweets_links_mentions_case_and_spacing_do_not_change_the_key():
    base = cache_key("Chuck Bass is everything #MCM")
    assert cache_key("RT @ltsChuckBass: Chuck Bass is everything #MCM") == base
    assert cache_key("RT @ ltsChuckBass : chuck  bass is EVERYTHING #MCM https://t.co/abc") == base
    assert cache_key("@gossipgirl Chuck Bass is everything #MCM\n") == base
    assert cache_key("Chuck Bass is nothing #MCM") != base
    assert normalise_text("  Hello   WORLD www.x.com ") == "hello world"


def test_the_image_is_part_of_the_key():
    assert cache_key("same text", b"image-a") != cache_key("same text", b"image-b")
    assert cache_key("same text", b"image-a") == cache_key("SAME text", b"image-a")
    assert cache_key("same text", None) != cache_key("same text", b"image-a")


def test_lru_is_bounded_and_counts_hits_misses_evictions():
    cache: RationaleCache[str] = RationaleCache(capacity=2)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("c", "C")  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("c") == "C" and cache.get("a") == "A"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.size) == (3, 1, 1, 2)
    assert stats.hit_rate == 0.75


def test_capacity_zero_disables_the_cache():
    cache: RationaleCache[str] = RationaleCache(capacity=0)
    cache.put("a", "A")
    assert cache.get("a") is None and len(cache) == 0


def test_concurrent_use_keeps_the_bound_and_the_counts():
    cache: RationaleCache[int] = RationaleCache(capacity=50)

    def work(i: int) -> None:
        cache.put(str(i % 80), i)
        cache.get(str((i * 7) % 80))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(2000)))
    stats = cache.stats()
    assert stats.size == 50 and stats.hits + stats.misses == 2000
