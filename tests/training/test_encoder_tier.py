"""The accurate tier (issue 29): the fused SLM on an MPNet encoder (all-mpnet-base-v2's
architecture, here tiny and random) trains, evaluates, and is served by tritonserver with the
same logits as in process. The ONNX path is checked in test_onnx_export (mpnet-inner-fusion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lrsa.model import load_checkpoint, tiny_test_checkpoint
from lrsa.predict import Predictor, encode_batch
from serving.triton_server import render_repository
from scorer_samples import DESCRIPTIONS, RATIONALES, TEXTS, _items
from test_training import _history, _run_cli, _train, write_dataset
from workers.stages.score import ScoreProcessor, ScorerSettings


@pytest.fixture(scope="module")
def mpnet_checkpoint(tmp_path_factory) -> Path:
    model, tokenizer = load_checkpoint(tiny_test_checkpoint(tmp_path_factory.mktemp("mpnet"), architecture="mpnet"))
    assert type(model.text_encoder).__name__ == "MPNetModel" and len(model.inner_fusion) == 2
    for fusion in model.inner_fusion:  # opened, so that the inner fusion changes the logits
        fusion.opening.data.fill_(1.0)
    from lrsa.model import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("mpnet-opened"), model, tokenizer)


def test_an_mpnet_fused_slm_trains_resumes_and_evaluates(mpnet_checkpoint, tmp_path, capsys):
    data = write_dataset(tmp_path / "mabsa")
    a = _train(data, mpnet_checkpoint, tmp_path / "a")
    assert len(a["history"]) == 2 and a["history"][1]["loss"] < a["history"][0]["loss"]
    assert _history(_train(data, mpnet_checkpoint, tmp_path / "b")) == _history(a)  # deterministic
    argv = ["eval", "--data-dir", str(data), "--dataset", "twitter2015", "--split", "test",
            "--checkpoint", str(tmp_path / "a"), "--json", "--threads", "1"]
    assert _run_cli(argv) == 0
    assert '"jmasa"' in capsys.readouterr().out
    trained, _ = load_checkpoint(tmp_path / "a")
    assert trained.config.encoder_config["model_type"] == "mpnet"


@pytest.mark.triton
def test_triton_serves_the_mpnet_tier_as_in_process(start_triton, mpnet_checkpoint, tmp_path):
    server = start_triton(repository=render_repository(tmp_path / "repo", mpnet_checkpoint, threads=1))
    scorer = ScoreProcessor(ScorerSettings(url=server.grpc_url, checkpoint=mpnet_checkpoint, client="sync",
                                           request_batch_size=4))
    try:
        model, tokenizer = load_checkpoint(mpnet_checkpoint)
        tensors, _ = encode_batch(tokenizer, model.config, TEXTS, RATIONALES, DESCRIPTIONS)
        with torch.inference_mode():
            want = model(**tensors).numpy()
        [got] = scorer.transport.infer_many([{k: v.numpy() for k, v in tensors.items()}])
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
        items = scorer.process(_items())
        expected = Predictor.from_checkpoint(mpnet_checkpoint).predict(TEXTS, RATIONALES, DESCRIPTIONS)
        assert [[(a.term, a.sentiment) for a in i.aspects] for i in items] == \
            [[(a.term, a.sentiment) for a in e] for e in expected]
    finally:
        scorer.close()
