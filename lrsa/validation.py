"""Turning raw message bytes into a validated Post, or a BadPost with a dead-letter reason."""

from __future__ import annotations

import binascii
import io
import json
from dataclasses import dataclass

from pydantic import ValidationError

from lrsa.schemas import DeadLetterReason, Post


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
    """Decode and validate one message value. Raises BadPost on anything unusable."""
    if raw is None:
        raise BadPost(DeadLetterReason.invalid_json, "message has no value (tombstone)")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadPost(DeadLetterReason.invalid_json, f"not valid JSON: {e}", e) from e
    if not isinstance(data, dict):
        raise BadPost(DeadLetterReason.schema_violation,
                      f"expected a JSON object, got {type(data).__name__}")
    try:
        post = Post.model_validate(data)
    except ValidationError as e:
        raise BadPost(DeadLetterReason.schema_violation, _first_errors(e), e) from e
    _check_text(post, limits)
    _check_image(post, limits)
    return post


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
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadPost(DeadLetterReason.image_undecodable, f"image bytes are not a readable image: {e}", e) from e
