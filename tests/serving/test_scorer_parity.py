"""Must show 1: the Triton path and the in-process PyTorch path agree on the same batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lrsa.model import load_checkpoint
from lrsa.predict import Predictor, encode_batch
from serving.triton_server import TritonServer
from workers.stages.score import ScoreProcessor, ScorerSettings
from scorer_samples import DESCRIPTIONS, RATIONALES, TEXTS, _items

pytestmark = pytest.mark.triton

@pytest.fixture(params=["aio", "sync"])
def scorer(request, triton_server: TritonServer, tiny_checkpoint: Path):
    # Two requests per batch, so the server also batches and pads requests of different lengths.
    processor = ScoreProcessor(ScorerSettings(url=triton_server.grpc_url, checkpoint=tiny_checkpoint,
                                              client=request.param, request_batch_size=4))
    yield processor
    processor.close()


def test_triton_and_in_process_give_the_same_aspects(scorer: ScoreProcessor, tiny_checkpoint: Path) -> None:
    items = scorer.process(_items())
    expected = Predictor.from_checkpoint(tiny_checkpoint).predict(TEXTS, RATIONALES, DESCRIPTIONS)
    assert sum(len(a) for a in expected) > 0  # the random tiny model tags plenty of spans
    for item, want in zip(items, expected):
        got = item.aspects
        assert [(a.term, a.start, a.end, a.sentiment) for a in got] == \
               [(a.term, a.start, a.end, a.sentiment) for a in want]
        assert [a.confidence for a in got] == pytest.approx([a.confidence for a in want], abs=1e-4)
        for a in got:
            assert item.post.text[a.start:a.end] == a.term
        assert item.model_versions["slm"] == "triton:lrsa_fused/latest"
        assert "score" in item.timings_ms


def test_triton_logits_match_pytorch(scorer: ScoreProcessor, tiny_checkpoint: Path) -> None:
    model, tokenizer = load_checkpoint(tiny_checkpoint)
    tensors, _ = encode_batch(tokenizer, model.config, TEXTS, RATIONALES, DESCRIPTIONS)
    with torch.inference_mode():
        want = model(**tensors).numpy()
    [got] = scorer.transport.infer_many([{k: v.numpy() for k, v in tensors.items()}])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_empty_batch_and_health(scorer: ScoreProcessor) -> None:
    assert scorer.process([]) == []
    assert scorer.healthy()
