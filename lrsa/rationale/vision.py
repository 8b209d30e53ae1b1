"""Image descriptions from a vision-language model (any HF image-text-to-text model by id/folder).

Optional: no VLM ships offline, so the default engine is text only. Images are few and the VLM
runs plain batched `generate()`; the continuous batcher serves the text LLM, the hot path.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from lrsa.rationale.loading import parse_dtype
from lrsa.rationale.prompts import get_template


class ImageDescriber:
    def __init__(self, model: str, device: str = "cpu", dtype: str = "auto", max_new_tokens: int = 48) -> None:
        self.processor = AutoProcessor.from_pretrained(model)
        self.model = AutoModelForImageTextToText.from_pretrained(
            model, dtype=parse_dtype(dtype, device)).to(device).eval()
        self.max_new_tokens = max_new_tokens

    @torch.inference_mode()
    def describe(self, requests: Sequence, prompt_version: str) -> list[str]:
        """One description per request (each has .text and .image bytes)."""
        template = get_template(prompt_version).image
        conversations = [[{"role": "user", "content": [
            {"type": "image", "image": Image.open(io.BytesIO(r.image)).convert("RGB")},
            {"type": "text", "text": template.format(text=r.text)}]}] for r in requests]
        inputs = self.processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "left"}).to(self.model.device)
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]
