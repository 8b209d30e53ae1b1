"""Batch job: post-level rationales for a MABSA split, with the serving engine and prompts.

The SLM should be trained on rationales of the LLM that serves it (train/serve skew otherwise).
Output: JSONL, one {"image_id", "text", "rationale", "model", "prompt_version"} per tweet, appended
chunk by chunk and flushed, so an interrupted job resumes where it stopped (ids already written
are skipped).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from lrsa.rationale.engine import RationaleEngine, RationaleRequest
from training.settings import RationalesJobSettings

log = logging.getLogger(__name__)


def load_posts(data_dir: Path, dataset: str, split: str, limit: int | None = None) -> list[dict]:
    """{"image_id", "text"} per tweet; the text is its words joined by spaces."""
    tweets = json.loads((Path(data_dir) / dataset / f"{split}.json").read_text())[:limit]
    return [{"image_id": t["image_id"], "text": " ".join(t["words"])} for t in tweets]


def written_ids(path: Path) -> set[str]:
    """Ids already in the output; a torn last line (killed mid-write) is ignored and rewritten."""
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        try:
            ids.add(json.loads(line)["image_id"])
        except (json.JSONDecodeError, KeyError):
            continue
    return ids


def _chunks(items: list[dict], size: int) -> Iterator[list[dict]]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


def _truncate_torn_line(path: Path) -> None:
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        text = path.read_text()
        path.write_text(text[: text.rfind("\n") + 1])


def run(settings: RationalesJobSettings, engine: RationaleEngine | None = None) -> Path:
    out = settings.out_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    posts = load_posts(settings.data_dir, settings.dataset, settings.split, settings.limit)
    _truncate_torn_line(out)
    done = written_ids(out)
    todo = [p for p in posts if p["image_id"] not in done]
    log.info("%s/%s: %d posts, %d already in %s, %d to write", settings.dataset, settings.split, len(posts),
             len(posts) - len(todo), out, len(todo))
    if not todo:
        return out
    engine = engine or RationaleEngine(settings)
    t0, tokens = time.perf_counter(), 0
    with out.open("a") as f, tqdm(total=len(posts), initial=len(posts) - len(todo), unit="post",
                                  desc=f"rationales {settings.dataset}/{settings.split}") as bar:
        for chunk in _chunks(todo, settings.chunk_size):
            rationales = engine.generate([RationaleRequest(p["text"]) for p in chunk])
            for p, r in zip(chunk, rationales):
                f.write(json.dumps({**p, "rationale": r.text, "model": settings.model,
                                    "prompt_version": settings.prompt_version}) + "\n")
                tokens += r.new_tokens
            f.flush()
            bar.update(len(chunk))
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - t0):.1f}")
    log.info("wrote %d rationales (%d tokens) in %.0f s; cache %s", len(todo), tokens, time.perf_counter() - t0,
             engine.cache_stats())
    return out
