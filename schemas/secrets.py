"""Secrets never print: the API key and DSN passwords are wrapped or masked before any output."""

from __future__ import annotations

import re

_DSN_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)(?P<tail>@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


def mask_dsn(text: str) -> str:
    """Replace the password of every URL-style or key=value DSN in `text` with ***."""
    text = _DSN_PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", text)
    return _KV_PASSWORD.sub(lambda m: f"{m.group(1)}***", text)


class Secret:
    """A string that shows as *** in repr, str, logs and tracebacks; `.reveal()` is explicit."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)
