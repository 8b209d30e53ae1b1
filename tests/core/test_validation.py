"""Every kind of bad input maps to its dead-letter reason; good input parses."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from lrsa.schemas import DeadLetterReason as R
from lrsa.validation import BadPost, Limits, parse_post
from repo_paths import REPO


def png_b64(size: int = 8) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def raw(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_good_post_with_image_and_extras() -> None:
    post = parse_post(raw(id="p1", text="Loving the new Pixel camera", image={"b64": png_b64()}, source="x"))
    assert post.id == "p1" and post.meta == {"source": "x"}
    assert post.image_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("value, reason", [
    (None, R.invalid_json),
    (b"{not json", R.invalid_json),
    (b"\xff\xfe\x00", R.invalid_json),
    (b"[1, 2]", R.schema_violation),
    (raw(text="no id"), R.schema_violation),
    (raw(id="p", text=5), R.schema_violation),
    (raw(id="p", text="   \n"), R.empty_text),
    (raw(id="p", text="x" * 10_001), R.text_too_long),
    (raw(id="p", text="hi", image={"b64": "not base64!!"}), R.image_undecodable),
    (raw(id="p", text="hi", image={"b64": base64.b64encode(b"not an image").decode()}), R.image_undecodable),
])
def test_bad_input_reason(value, reason) -> None:
    with pytest.raises(BadPost) as e:
        parse_post(value)
    assert e.value.reason == reason


def test_limits_are_configurable() -> None:
    big = raw(id="p", text="hi", image={"b64": png_b64(64)})
    with pytest.raises(BadPost) as e:
        parse_post(big, Limits(max_image_bytes=50))
    assert e.value.reason == R.image_too_large
    assert parse_post(raw(id="p", text="x" * 20), Limits(max_text_chars=20)).text == "x" * 20


def test_samples_file_has_good_posts_and_a_few_bad_lines() -> None:
    from pathlib import Path

    reasons = []
    lines = (REPO / "samples" / "posts.jsonl").read_bytes().splitlines()
    for line in lines:
        try:
            parse_post(line)
        except BadPost as e:
            reasons.append(e.reason)
    assert len(lines) - len(reasons) == 30
    assert sorted(reasons) == sorted([R.invalid_json, R.empty_text, R.image_undecodable])
