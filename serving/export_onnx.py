"""Export the fused SLM to ONNX, as the `lrsa_fused_onnx` entry of a Triton model repository.

The ONNX graph has the same tensors as the Python-backend entry (see lrsa.predict.TENSOR_NAMES),
with dynamic batch and sequence axes, so a worker switches backends by model name only. The
TorchScript-based exporter is used: it needs no extra packages (the dynamo exporter needs
onnxscript) and handles the model's data-dependent masking.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from torch import nn

from lrsa.model import FusedSLM, load_checkpoint
from lrsa.predict import TENSOR_NAMES, encode_batch
from serving.triton_server import ONNX_MODEL, REPOSITORY_TEMPLATE

log = logging.getLogger(__name__)

OPSET = 17


class _Positional(nn.Module):
    """The model with the six tensors as positional inputs, in TENSOR_NAMES order."""

    def __init__(self, model: FusedSLM):
        super().__init__()
        self.model = model

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(TENSOR_NAMES, tensors)))


def example_inputs(checkpoint: Path) -> dict[str, torch.Tensor]:
    """A small batch with every stream present and absent, to trace all code paths."""
    model, tokenizer = load_checkpoint(checkpoint)
    tensors, _ = encode_batch(tokenizer, model.config,
                              ["Chuck Bass is everything # MCM", "RT @ user : Stagecoach 2016 was fun"],
                              ["Positive: the post praises Chuck Bass.", None],
                              [None, "A man on a stage with a microphone."])
    return tensors


def export_onnx(checkpoint: Path, repository: Path, version: int = 1) -> Path:
    """Write `repository/lrsa_fused_onnx/{config.pbtxt, <version>/model.onnx}`; returns the .onnx path."""
    model, _ = load_checkpoint(checkpoint)
    if model.config.use_image_features:
        raise NotImplementedError("ONNX export of the raw-image branch is not supported yet")
    entry = repository / ONNX_MODEL
    out = entry / str(version) / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPOSITORY_TEMPLATE / ONNX_MODEL / "config.pbtxt", entry / "config.pbtxt")
    inputs = example_inputs(checkpoint)
    axes = {name: {0: "batch", 1: f"{name.split('_')[0]}_len"} for name in TENSOR_NAMES}
    axes["logits"] = {0: "batch", 1: "input_len"}
    log.info("exporting %s to %s (opset %d)", checkpoint, out, OPSET)
    with torch.inference_mode():
        torch.onnx.export(_Positional(model).eval(), tuple(inputs[n] for n in TENSOR_NAMES), str(out),
                          input_names=list(TENSOR_NAMES), output_names=["logits"], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)
    return out
