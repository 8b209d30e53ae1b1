"""The message contracts: committed JSON Schema files match the code, and the documented shapes hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lrsa.schemas import ALL_SCHEMAS, SCHEMA_VERSIONS, Aspect, DeadLetter, DeadLetterReason, ErrorInfo, Post, Result, SourceRef
from repo_paths import REPO

SCHEMA_DIR = REPO / "schemas"


@pytest.mark.parametrize("name", sorted(ALL_SCHEMAS))
def test_committed_json_schema_matches_code(name: str) -> None:
    path = SCHEMA_DIR / f"{name}.v{SCHEMA_VERSIONS[name]}.schema.json"
    assert path.exists(), f"run `lrsa schemas` to export {path.name}"
    assert json.loads(path.read_text()) == ALL_SCHEMAS[name].model_json_schema(), \
        f"{path.name} is stale: run `lrsa schemas`"


def test_unknown_fields_are_kept_in_meta() -> None:
    post = Post.model_validate({"id": "1", "text": "hi", "retweets": 3, "meta": {"src": "x"}})
    assert post.meta == {"retweets": 3, "src": "x"}


def test_image_forms() -> None:
    by_url = Post.model_validate({"id": "1", "text": "t", "image": {"url": "http://x/y.jpg"}})
    inline = Post.model_validate({"id": "1", "text": "t", "image": {"b64": "aGk="}})
    assert by_url.image_bytes() is None and by_url.image.url == "http://x/y.jpg"
    assert inline.image_bytes() == b"hi"
    assert Post.model_validate({"id": "1", "text": "t", "image": None}).image is None


def test_image_with_both_or_unknown_keys_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Post.model_validate({"id": "1", "text": "t", "image": {"path": "/etc/passwd"}})


def test_created_at_must_be_iso8601() -> None:
    assert Post.model_validate({"id": "1", "text": "t", "created_at": "2026-11-28T10:00:00Z"}).created_at.year == 2026
    with pytest.raises(ValidationError):
        Post.model_validate({"id": "1", "text": "t", "created_at": "yesterday"})


def test_result_and_dead_letter_round_trip() -> None:
    src = SourceRef(topic="posts", partition=2, offset=41)
    result = Result(post_id="p", aspects=[Aspect(term="Chuck Bass", start=0, end=10, sentiment="positive",
                                                 confidence=0.9)], source=src)
    assert Result.model_validate_json(result.model_dump_json()) == result
    dl = DeadLetter(original_b64="e30=", error=ErrorInfo(reason=DeadLetterReason.empty_text,
                                                          error_class="BadPost", message="empty"), source=src)
    back = DeadLetter.model_validate_json(dl.model_dump_json())
    assert back.original() == b"{}" and back.error.reason is DeadLetterReason.empty_text
