"""Triton Python-backend model: the fused SLM (lrsa.model.FusedSLM) from a PyTorch checkpoint.

The checkpoint folder comes from the `checkpoint` parameter of config.pbtxt (filled in when the
repository is rendered by serving.triton_server.render_repository), never from code. The
dynamic batcher hands us several requests at once; they are padded to one length, run as one
forward pass and split again.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from lrsa.model import load_checkpoint

INPUTS = ("input_ids", "attention_mask", "rationale_ids", "rationale_mask", "image_desc_ids", "image_desc_mask")


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        checkpoint = params.get("checkpoint") or os.environ.get("LRSA_CHECKPOINT", "")
        if not checkpoint:
            raise pb_utils.TritonModelException("parameter 'checkpoint' (or env LRSA_CHECKPOINT) is not set")
        threads = int(params.get("torch_threads", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        device = params.get("device", "auto")
        if device == "auto":
            device = f"cuda:{args['model_instance_device_id']}" if args["model_instance_kind"] == "GPU" else "cpu"
        self.device = torch.device(device)
        self.model, _ = load_checkpoint(checkpoint, device=self.device)
        pb_utils.Logger.log_info(f"lrsa_fused: loaded {checkpoint} on {self.device}, {torch.get_num_threads()} threads")

    def execute(self, requests: list) -> list:
        arrays = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in INPUTS} for r in requests]
        sizes = [a["input_ids"].shape[0] for a in arrays]
        lengths = [a["input_ids"].shape[1] for a in arrays]
        batch = {name: self._pad_cat([a[name] for a in arrays]) for name in INPUTS}
        with torch.inference_mode():
            logits = self.model(**batch).float().cpu().numpy()
        responses, row = [], 0
        for size, length in zip(sizes, lengths):
            out = np.ascontiguousarray(logits[row:row + size, :length])
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("logits", out)]))
            row += size
        return responses

    def _pad_cat(self, arrays: list[np.ndarray]) -> torch.Tensor:
        """Right-pad [b_i, len_i] int arrays with 0 (pad id and mask 0) to one length, stack."""
        width = max(a.shape[1] for a in arrays)
        padded = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays]
        return torch.from_numpy(np.concatenate(padded)).to(self.device)
