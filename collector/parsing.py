"""Decode a request body into a list of click payloads.

Accepted bodies: one JSON object, a JSON array of objects
(``application/json``) or one object per line (``application/x-ndjson``).
"""

from __future__ import annotations

import json
from typing import Any

from shared_logic.clicks import json_type

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson")


class RequestError(ValueError):
    """A request that is rejected as a whole, with its HTTP status."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; send numbers as finite values")


def media_type(content_type: str | None) -> str:
    """Return the media type of a Content-Type header without its parameters."""
    if not content_type:
        raise RequestError(
            415, "unsupported_media_type",
            "Content-Type is missing; send application/json or application/x-ndjson",
        )
    kind = content_type.split(";")[0].strip().lower()
    if kind not in JSON_TYPES + NDJSON_TYPES:
        raise RequestError(
            415, "unsupported_media_type",
            f"Content-Type {content_type!r} is not supported; send application/json "
            "(one click or an array) or application/x-ndjson (one click per line)",
        )
    return kind


def _decode_text(body: bytes) -> str:
    if not body.strip():
        raise RequestError(400, "empty_body", "the request body is empty; send at least one click")
    if body.startswith(b"\xef\xbb\xbf"):
        raise RequestError(400, "malformed_json",
                           "the body starts with a UTF-8 byte order mark; remove it and send plain UTF-8 JSON")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            400, "invalid_encoding",
            f"the body is not valid UTF-8 (byte {exc.start}); encode the JSON as UTF-8",
        ) from None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice in one object; send each field once")
        seen[key] = value
    return seen


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_reject_duplicate_keys)
    except RecursionError:
        raise RequestError(400, "malformed_json",
                           f"{where} nests arrays or objects too deeply; a click is one flat object") from None
    except ValueError as exc:
        raise RequestError(400, "malformed_json", f"{where} is not valid JSON: {exc}") from None


def parse_body(body: bytes, kind: str, max_clicks: int) -> list[Any]:
    """Return the click payloads of a body, or raise RequestError."""
    text = _decode_text(body)
    if kind in NDJSON_TYPES:
        # Split on line feeds only: str.splitlines() also splits on U+2028 and
        # U+0085, which JSON allows unescaped inside strings.
        lines = [(number, line.removesuffix("\r")) for number, line in enumerate(text.split("\n"), 1)
                 if line.strip()]
        _check_count(len(lines), max_clicks)
        return [_loads(line, f"line {number}") for number, line in lines]

    document = _loads(text, "the body")
    if isinstance(document, list):
        if not document:
            raise RequestError(400, "empty_batch", "the JSON array is empty; send at least one click")
        _check_count(len(document), max_clicks)
        return document
    if isinstance(document, dict):
        return [document]
    raise RequestError(
        400, "invalid_body",
        f"the body is a JSON {json_type(document)}; send a click object or an array of them",
    )


def _check_count(count: int, max_clicks: int) -> None:
    if count > max_clicks:
        raise RequestError(
            413, "batch_too_large",
            f"the batch has {count} clicks; the maximum is {max_clicks}, so split it into smaller requests",
        )
