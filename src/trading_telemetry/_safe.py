"""Text about values that may be hostile: bounded, and never raising.

Error messages name the value that was wrong. That value may be anything the caller
passed: an object whose ``__repr__`` raises, a megabyte string, an int too large to
print. These helpers turn it into a short text whatever it is.
"""

from __future__ import annotations

REPR_LIMIT = 80
"""Characters of a value's repr kept in an error message."""


def safe_repr(value: object, limit: int = REPR_LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters; a placeholder if repr raises."""
    try:
        if type(value) is str and len(value) > limit:  # do not repr a megabyte to keep 80 characters
            return f"{value[:limit]!r}... ({len(value)} characters)"
        text = repr(value)
        if type(text) is not str:
            raise TypeError("repr returned a non-str")
    except Exception:  # noqa: BLE001 - hostile __repr__, int too large to print, ...
        return f"<unprintable {type_name(value)}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def safe_str(value: object, limit: int = 200) -> str:
    """``str(value)`` (an exception's message, say), bounded; a placeholder if it raises."""
    try:
        text = str(value)
        if type(text) is not str:
            raise TypeError("str returned a non-str")
    except Exception:  # noqa: BLE001
        return f"<unprintable {type_name(value)}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def type_name(value: object) -> str:
    """The name of ``type(value)`` (never ``value.__class__``, which an object can fake)."""
    name = type.__dict__["__name__"].__get__(type(value))
    return name if type(name) is str else "object"
