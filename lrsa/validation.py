"""Turning raw message bytes into a validated Post, or a BadPost with a dead-letter reason.

The contract (property-tested with random bytes, random JSON and mutated posts): `parse_post`
returns a Post or raises BadPost, whatever the bytes; nothing else escapes it. A post that would
crash a later step (a lone surrogate cannot be encoded into the result or its key; nesting deep
enough to overflow a recursive parser, pickler or serialiser) is refused here, with a reason.
"""

from __future__ import annotations

import binascii
import io
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from lrsa.schemas import DeadLetterReason, Post

MAX_DEPTH = 64  # nesting of objects/arrays in a post; real posts need 3-4 levels


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 10_000
    max_image_bytes: int = 10 * 1024 * 1024


class BadPost(Exception):
    """Input that can never succeed: it goes to the dead-letter topic with `reason`."""

    def __init__(self, reason: DeadLetterReason, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.error_class = type(cause).__name__ if cause is not None else type(self).__name__


def parse_post(raw: bytes | None, limits: Limits = Limits()) -> Post:
    """Decode and validate one message value. Raises BadPost on anything unusable, never anything else."""
    try:
        return _parse(raw, limits)
    except BadPost:
        raise
    except RecursionError as e:  # a recursive step below the depth check; defence in depth
        raise BadPost(DeadLetterReason.schema_violation, "post is nested too deeply to process", e) from e
    except Exception as e:  # noqa: BLE001 - the contract: bad input is a dead letter, never a crash
        raise BadPost(DeadLetterReason.schema_violation,
                      f"post could not be validated: {type(e).__name__}: {str(e)[:300]}", e) from e


def _parse(raw: bytes | None, limits: Limits) -> Post:
    if raw is None:
        raise BadPost(DeadLetterReason.invalid_json, "message has no value (tombstone)")
    try:
        data = json.loads(raw, object_pairs_hook=_unique_keys)
    except RecursionError as e:  # json's C scanner recurses once per nesting level
        raise BadPost(DeadLetterReason.invalid_json, f"JSON nested too deeply to parse (a post may nest {MAX_DEPTH} levels)",
                      e) from e
    except DuplicateKeyError as e:
        raise BadPost(DeadLetterReason.invalid_json, f"not valid JSON for a post: duplicate key {e.key!r}", e) from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadPost(DeadLetterReason.invalid_json, f"not valid JSON: {e}", e) from e
    except (ValueError, OverflowError, TypeError) as e:  # e.g. an integer of more than 4,300 digits
        raise BadPost(DeadLetterReason.invalid_json, f"not valid JSON: {type(e).__name__}: {str(e)[:300]}",
                      e) from e
    if not isinstance(data, dict):
        raise BadPost(DeadLetterReason.schema_violation,
                      f"expected a JSON object, got {type(data).__name__}")
    _check_shape(data)
    try:
        post = Post.model_validate(data)
    except ValidationError as e:
        raise BadPost(DeadLetterReason.schema_violation, _first_errors(e), e) from e
    _check_text(post, limits)
    _check_image(post, limits)
    return post


class DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: two values for one key are ambiguous (parsers differ on which wins)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(k[:100])
        out[k] = v
    return out


def _check_shape(data: dict) -> None:
    """Iteratively (no recursion to overflow): nesting depth, and strings that cannot be encoded
    as UTF-8 (JSON allows lone surrogates such as "\\ud800"; the result and its key could not be
    written)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadPost(DeadLetterReason.schema_violation, f"post is nested more than {MAX_DEPTH} levels deep")
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in children:
            for s in (k, v):
                if isinstance(s, str):
                    try:
                        s.encode("utf-8")
                    except UnicodeEncodeError as e:
                        raise BadPost(DeadLetterReason.invalid_json,
                                      f"string holds a lone surrogate ({s[e.start:e.end]!a}); not valid UTF-8", e) from e
            if isinstance(v, (dict, list)):
                stack.append((v, depth + 1))


def _first_errors(e: ValidationError, n: int = 3) -> str:
    parts = [f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}" for err in e.errors()[:n]]
    return "schema violation: " + "; ".join(parts)


def _check_text(post: Post, limits: Limits) -> None:
    if not post.text.strip():
        raise BadPost(DeadLetterReason.empty_text, "post text is empty or whitespace only")
    if len(post.text) > limits.max_text_chars:
        raise BadPost(DeadLetterReason.text_too_long,
                      f"post text has {len(post.text)} characters; the limit is {limits.max_text_chars}")


def _check_image(post: Post, limits: Limits) -> None:
    if post.image is None or not hasattr(post.image, "b64"):
        return
    # base64 inflates by 4/3: reject on the encoded size before decoding a huge payload.
    if len(post.image.b64) * 3 // 4 > limits.max_image_bytes + 3:
        raise BadPost(DeadLetterReason.image_too_large,
                      f"image is about {len(post.image.b64) * 3 // 4} bytes; the limit is {limits.max_image_bytes}")
    try:
        data = post.image_bytes()
    except (binascii.Error, ValueError) as e:
        raise BadPost(DeadLetterReason.image_undecodable, f"image is not valid base64: {e}", e) from e
    assert data is not None
    if len(data) > limits.max_image_bytes:
        raise BadPost(DeadLetterReason.image_too_large,
                      f"image has {len(data)} bytes; the limit is {limits.max_image_bytes}")
    _verify_image(data)


def _verify_image(data: bytes) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Image.DecompressionBombError as e:  # pixel count far beyond PIL's limit
        raise BadPost(DeadLetterReason.image_too_large, f"image has too many pixels: {e}", e) from e
    except Exception as e:  # noqa: BLE001 - PIL's decoders raise many kinds (OSError, SyntaxError, struct.error, ...)
        raise BadPost(DeadLetterReason.image_undecodable, f"image bytes are not a readable image: {e}", e) from e
