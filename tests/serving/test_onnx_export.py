"""`lrsa export --format onnx`: the ONNX model run by onnxruntime (CPU) matches PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lrsa.model import load_checkpoint, save_checkpoint, tiny_test_checkpoint
from lrsa.predict import TENSOR_NAMES, encode_batch
from lrsa_cli.main import main
from serving.triton_server import ONNX_MODEL


@pytest.fixture(scope="module", params=["top-fusion", "inner-fusion", "sentiment-attention-head", "mpnet-inner-fusion"])
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "top-fusion":
        return tiny_test_checkpoint(tmp_path_factory.mktemp("top"), inner_fusion_layers=0)
    if request.param == "sentiment-attention-head":
        return tiny_test_checkpoint(tmp_path_factory.mktemp("head"), sentiment_head="attention")
    # Fusion inside the encoder runs from forward hooks: the export must trace them too. The
    # accurate tier (all-mpnet-base-v2) is MPNet: relative position bias, other attention names.
    architecture = "mpnet" if request.param.startswith("mpnet") else "bert"
    model, tokenizer = load_checkpoint(tiny_test_checkpoint(tmp_path_factory.mktemp("inner"), inner_fusion_layers=2,
                                                            architecture=architecture))
    for fusion in model.inner_fusion:
        fusion.opening.data.fill_(1.0)
    return save_checkpoint(tmp_path_factory.mktemp("inner-opened"), model, tokenizer)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    repo = tmp_path_factory.mktemp("onnx-repo")
    assert main(["export", "--format", "onnx", "--checkpoint", str(checkpoint), "--out", str(repo)]) == 0
    return repo


def test_export_writes_a_triton_onnxruntime_entry(exported: Path) -> None:
    entry = exported / ONNX_MODEL
    config = (entry / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config and "dynamic_batching" in config
    graph = onnx.load(str(entry / "1" / "model.onnx")).graph
    assert [i.name for i in graph.input] == list(TENSOR_NAMES)
    assert [o.name for o in graph.output] == ["logits"]


@pytest.mark.parametrize("texts, rationales, descriptions", [
    # other lengths and batch sizes than the export traced, each stream present and absent
    (["I love New York but hate the Yankees , and the subway is late again today"] * 3 + ["x"],
     [None, "Positive about New York, negative about the Yankees.", None, "r"], ["A city skyline.", None, None, None]),
    (["Chuck Bass is everything # MCM"], None, None),
    ([f"Post number {i} about Sam Hunt at Stagecoach" for i in range(9)], [f"reason {i}" for i in range(9)],
     [f"a long image description number {i} " * 5 for i in range(9)]),
])
def test_onnxruntime_matches_pytorch(exported: Path, checkpoint: Path, texts, rationales, descriptions) -> None:
    model, tokenizer = load_checkpoint(checkpoint)
    tensors, _ = encode_batch(tokenizer, model.config, texts, rationales, descriptions)
    with torch.inference_mode():
        want = model(**tensors).numpy()
    session = ort.InferenceSession(str(exported / ONNX_MODEL / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    [got] = session.run(["logits"], {k: v.numpy() for k, v in tensors.items()})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
