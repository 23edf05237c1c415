"""Function tags: FunctionGraph's naming rules, and the ``tags`` text of CreateFunction.

Keys and values follow the rules of FunctionGraph's user guide (Configuring Tags): a key is
1–128 characters — letters and digits of any script, spaces, and ``_ . : = + - @`` — that
neither starts with ``_sys_`` (system tags) nor starts or ends with a space; a value is 0–255
characters of the same set plus ``/``. A function has at most :data:`MAX_TAGS` tags.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from openfgs.errors import BadRequest

MAX_TAGS = 20
KEY_MAX = 128
VALUE_MAX = 255
SYSTEM_PREFIX = "_sys_"
# The one system tag FunctionGraph answers: openfgs has no enterprise projects ("0": default).
SYSTEM_TAGS = (("_sys_enterprise_project_id", "0"),)
_KEY_PUNCTUATION = frozenset("_.:=+-@ ")
_VALUE_PUNCTUATION = _KEY_PUNCTUATION | {"/"}
# A CreateFunction ``tags`` text longer than this cannot hold MAX_TAGS valid tags.
TEXT_MAX = MAX_TAGS * (KEY_MAX + VALUE_MAX) * 8


def _bad(message: str) -> BadRequest:
    return BadRequest(f"Invalid tags: {message}")


def _allowed(text: str, punctuation: frozenset[str]) -> bool:
    return all(c.isalnum() or c in punctuation for c in text)


def check_key(key: str) -> None:
    if not 1 <= len(key) <= KEY_MAX:
        raise _bad(f"a key has 1 to {KEY_MAX} characters, not {len(key)}")
    if key.startswith(SYSTEM_PREFIX):
        raise _bad(f"key {key[:64]!r}: {SYSTEM_PREFIX} starts the keys of system tags")
    if key != key.strip(" "):
        raise _bad(f"key {key[:64]!r} starts or ends with a space")
    if not _allowed(key, _KEY_PUNCTUATION):
        raise _bad(f"key {key[:64]!r}: letters, digits, spaces and _.:=+-@ only")


def check_value(key: str, value: str) -> None:
    if len(value) > VALUE_MAX:
        raise _bad(f"the value of {key[:64]!r} has more than {VALUE_MAX} characters")
    if not _allowed(value, _VALUE_PUNCTUATION):
        raise _bad(f"the value of {key[:64]!r}: letters, digits, spaces and _.:/=+-@ only")


def check_tags(tags: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Tags as one request sets them: each valid, no key twice, at most MAX_TAGS."""
    checked: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in tags:
        if len(checked) == MAX_TAGS:
            raise _bad(f"a function has at most {MAX_TAGS} tags")
        check_key(key)
        check_value(key, value)
        if key in seen:
            raise _bad(f"key {key[:64]!r} appears twice")
        seen.add(key)
        checked.append((key, value))
    return checked


def check_keys(keys: Iterable[str]) -> list[str]:
    """Keys as DeleteTags names them; a key that is not a function's is simply not there."""
    checked: list[str] = []
    for key in keys:
        if len(checked) == MAX_TAGS:
            raise _bad(f"a function has at most {MAX_TAGS} tags")
        check_key(key)
        if key not in checked:
            checked.append(key)
    return checked


def parse_tags_text(text: str | None) -> list[tuple[str, str]]:
    """CreateFunction's ``tags``, a string field: a JSON object of string values
    (``{"env": "prod"}``, the form of ``user_data``) or a JSON array of ``{"key", "value"}``
    items (the form of CreateTags); empty means none."""
    if text is None or not text.strip():
        return []
    if len(text) > TEXT_MAX:
        raise _bad(f"more than {TEXT_MAX} characters")
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad("expected a JSON object or a JSON array of {key, value}") from None
    if isinstance(data, dict):
        pairs = list(data.items())
    elif isinstance(data, list) and all(
        isinstance(item, dict) and set(item) <= {"key", "value"} and "key" in item for item in data
    ):
        pairs = [(item["key"], item.get("value", "")) for item in data]
    else:
        raise _bad("expected a JSON object or a JSON array of {key, value}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
        raise _bad("keys and values are strings")
    return check_tags(pairs)
