"""Property: whatever the bytes, parse_post returns a Post or raises BadPost, nothing else.

Hypothesis draws random bytes, random JSON (deep nesting, huge integers and floats, odd unicode
including lone surrogates, duplicate keys) and mutations of valid posts."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrsa.schemas import DeadLetterReason as R
from lrsa.schemas import Post
from lrsa.validation import MAX_DEPTH, BadPost, Limits, parse_post

LIMITS = Limits(max_text_chars=200, max_image_bytes=4096)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(raw: bytes | None) -> Post | BadPost:
    """Post or BadPost; any other exception fails the property (pytest shows it)."""
    try:
        post = parse_post(raw, LIMITS)
    except BadPost as e:
        assert isinstance(e.reason, R) and e.message
        return e
    assert isinstance(post, Post)
    post.id.encode()  # what the ingest actor does with it next: key and result must be writable
    post.model_dump_json()
    return post


def json_text(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**320)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text()
           | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)))  # lone surrogates
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
                           max_leaves=30)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(raw: bytes) -> None:
    outcome(raw)


@FUZZ
@given(json_values)
def test_random_json(value) -> None:
    outcome(json_text(value))


@FUZZ
@given(st.integers(min_value=1, max_value=20_000), st.sampled_from(["[", "{\"a\":"]), st.booleans())
def test_deep_nesting(depth: int, opener: str, closed: bool) -> None:
    closer = {"[": "]", "{\"a\":": "}"}[opener]
    inner = opener * depth + "1" + (closer * depth if closed else "")
    for raw in (inner.encode(), f'{{"id": "p", "text": "t", "meta": {{"x": {inner}}}}}'.encode()):
        result = outcome(raw)
        if depth + 2 > MAX_DEPTH:
            assert isinstance(result, BadPost)


@FUZZ
@given(st.text(min_size=1, max_size=50), st.text(max_size=50), json_values,
       st.sampled_from(["dup_key", "huge_int", "huge_float", "surrogate_id", "surrogate_text", "nan", "extra",
                        "image_junk", "created_at_junk", "truncate", "flip_byte"]),
       st.integers(min_value=0, max_value=10**6))
def test_mutated_valid_posts(pid: str, text: str, extra, mutation: str, where: int) -> None:
    base = json.dumps({"id": pid, "text": text})
    raw = {
        "dup_key": lambda: base[:-1] + ', "id": "again"}',
        "huge_int": lambda: base[:-1] + ', "n": ' + "9" * 5000 + "}",
        "huge_float": lambda: base[:-1] + ', "f": 1e99999, "g": -1e400}',
        "surrogate_id": lambda: json.dumps({"id": "\ud83d", "text": text or "x"}),
        "surrogate_text": lambda: json.dumps({"id": pid, "text": "ok \udc00 " + text}),
        "nan": lambda: base[:-1] + ', "created_at": NaN, "lang": Infinity}',
        "extra": lambda: base[:-1] + ', "x": ' + json_text(extra).decode("utf-8", "surrogatepass") + "}",
        "image_junk": lambda: base[:-1] + ', "image": ' + json_text({"b64": text or "x"}).decode("utf-8", "surrogatepass") + "}",
        "created_at_junk": lambda: base[:-1] + ', "created_at": ' + json.dumps(text) + "}",
        "truncate": lambda: base[: where % (len(base) + 1)],
        "flip_byte": lambda: base,
    }[mutation]()
    data = bytearray(raw.encode("utf-8", "surrogatepass"))
    if mutation == "flip_byte" and data:
        data[where % len(data)] ^= 1 << (where % 8)
    result = outcome(bytes(data))
    if mutation in ("dup_key", "huge_int", "surrogate_id", "surrogate_text"):
        assert isinstance(result, BadPost) and result.reason in (R.invalid_json, R.schema_violation)


def test_named_cases_get_clear_reasons() -> None:
    deep = b'{"id": "p", "text": "t", "meta": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    cases = {
        deep: (R.invalid_json, "nested too deeply"),
        b"[" * 100_000: (R.invalid_json, "nested too deeply"),
        b'{"id": "p", "text": "t", "n": ' + b"9" * 5000 + b"}": (R.invalid_json, "digits"),
        b'{"id": "\\ud800", "text": "t"}': (R.invalid_json, "lone surrogate"),
        b'{"id": "a", "text": "t", "id": "b"}': (R.invalid_json, "duplicate key 'id'"),
        b'{"id": "p", "text": "t", "m": ' + b"[" * 70 + b"]" * 70 + b"}": (R.schema_violation, "nested more than"),
    }
    for raw, (reason, words) in cases.items():
        result = outcome(raw)
        assert isinstance(result, BadPost) and result.reason == reason and words in result.message, (raw[:60], result)
    assert isinstance(outcome(b'{"id": "p", "text": "t", "f": 1e999}'), Post)  # infinity in meta is harmless
