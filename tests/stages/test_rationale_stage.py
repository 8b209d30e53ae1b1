"""Rationale stage: the StageProcessor sets rationales and exports its metrics; it runs in a Ray actor."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from lrsa.rationale.config import RationaleSettings
from lrsa.rationale.prompts import PROMPT_VERSION
from lrsa.schemas import Post, SourceRef
from rationale_helpers import tiny_rationale_processor
from workers.stages.rationale import RationaleStageSettings
from workers.stages.api import WorkItem
from repo_paths import TESTS


def _items(*texts: str) -> list[WorkItem]:
    return [WorkItem(Post(id=str(i), text=t), SourceRef(topic="in", partition=0, offset=i))
            for i, t in enumerate(texts)]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_processor_sets_rationales_and_counts_tokens_batches_and_cache_hits():
    processor = tiny_rationale_processor()
    before = {n: _sample(n) for n in ("lrsa_rationale_tokens_generated_total", "lrsa_rationale_cache_hits_total",
                                      "lrsa_rationale_cache_misses_total", "lrsa_rationale_batch_posts_count")}
    prompt_before = {src: _sample("lrsa_rationale_prompt_tokens_total", source=src)
                     for src in ("prefilled", "shared_prefix")}
    items = processor.process(_items("I love my new phone", "RT @x: I love my new phone", "I hate my phone"))
    assert all(it.rationale for it in items) and items[0].rationale == items[1].rationale
    assert items[0].image_description is None  # no vision-language model configured
    assert _sample("lrsa_rationale_tokens_generated_total") - before["lrsa_rationale_tokens_generated_total"] == \
        processor.engine.totals.new_tokens > 0
    assert _sample("lrsa_rationale_cache_misses_total") - before["lrsa_rationale_cache_misses_total"] == 2
    prompt = {src: _sample("lrsa_rationale_prompt_tokens_total", source=src) - n for src, n in prompt_before.items()}
    assert prompt["prefilled"] == processor.engine.totals.prefill_tokens > 0
    assert prompt["shared_prefix"] > 0  # both prompts start with the template's chat header and system prompt
    assert sum(prompt.values()) == processor.engine.totals.prompt_tokens
    processor.process(_items("i LOVE my new phone"))
    assert _sample("lrsa_rationale_cache_hits_total") - before["lrsa_rationale_cache_hits_total"] == 1
    assert _sample("lrsa_rationale_batch_posts_count") - before["lrsa_rationale_batch_posts_count"] == 2
    assert _sample("lrsa_rationale_queue_depth") == 0  # nothing left in the actor
    assert processor.versions()["rationale_prompt"] == PROMPT_VERSION and processor.healthy()


def test_stage_settings_come_from_env(monkeypatch):
    monkeypatch.setenv("LRSA_RATIONALE_SLOTS", "7")
    monkeypatch.setenv("LRSA_RATIONALE_MODEL", "HuggingFaceTB/SmolLM2-360M-Instruct")
    s = RationaleStageSettings()
    assert s.slots == 7 and s.model == "HuggingFaceTB/SmolLM2-360M-Instruct" and isinstance(s, RationaleSettings)


@pytest.mark.ray
@pytest.mark.slow
def test_processor_runs_in_the_pipelines_stage_actor():
    """The pipeline's own actor body (workers.stages.pool) loads the processor by dotted path in a real local Ray."""
    ray = pytest.importorskip("ray")
    from workers.stages.pool import new_actor

    tests = TESTS
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{tests}:{tests.parent}"}})
    try:
        actor = new_actor("rationale", "rationale_helpers:tiny_rationale_processor", num_cpus=1, num_gpus=0)
        status, items = ray.get(actor.process.remote(_items("I love my new phone", "I hate my phone")), timeout=180)
        assert status == "ok" and all(it.rationale for it in items)
        assert items[0].model_versions["rationale_prompt"] == PROMPT_VERSION and "rationale" in items[0].timings_ms
    finally:
        ray.shutdown()
