"""Validation of keys, labels and values, raising the package's MeasurementErrors.

Only called off the hot path: when a label set is first bound, and when a value fails
the handles' one-comparison fast check. Every message is built lazily from bounded
reprs (``_safe``): a rejected call in production mode formats nothing.
"""

from __future__ import annotations

import functools
import heapq
import math
import numbers
import sys
from collections.abc import Iterable, Mapping

from trading_telemetry._globals import STATE
from trading_telemetry._safe import safe_repr
from trading_telemetry.catalog import MAX_LABEL_VALUE_LENGTH as MAX_LABEL_VALUE_LENGTH
from trading_telemetry.catalog import SERVICE_LABEL, Kind, MetricSpec, Plane, allowed_values, lookup
from trading_telemetry.errors import InvalidValueError, LabelError, UnknownMetricError

_MAX = sys.float_info.max
_INF = math.inf
_SUGGESTION_KEY_LIMIT = 100  # keys longer than this get no suggestion
_SUGGESTIONS_KEPT = 256


def did_you_mean(key: object, keys: Iterable[str]) -> str:
    """``"; did you mean 'a', 'b'?"`` with the keys closest to ``key``, or ``""``.

    Computed at most once per distinct (key, keys) among the last _SUGGESTIONS_KEPT (a
    bounded cache, ``STATE.suggestions``, oldest out first), and never for a key that is not a short string.
    Recording calls it only when an error's message is read (strict mode, or the drop
    log at most once a minute), so a stream of distinct unknown keys in production never
    pays for it."""
    if type(key) is not str or len(key) > _SUGGESTION_KEY_LIMIT:
        return ""
    candidates = tuple(keys)
    cache_key = (candidates, key)
    suggestions = STATE.suggestions
    hint = suggestions.get(cache_key)
    if hint is None:
        close = _closest(key, candidates)
        hint = f"; did you mean {', '.join(repr(k) for k in close)}?" if close else ""
        with STATE.suggestions_lock:
            while len(suggestions) >= _SUGGESTIONS_KEPT:
                del suggestions[next(iter(suggestions))]
            suggestions[cache_key] = hint
    return hint


def _pairs(text: str) -> frozenset[str]:
    """The text's character pairs (itself, if shorter than two)."""
    return frozenset(text[i : i + 2] for i in range(len(text) - 1)) or frozenset((text,))


_candidate_pairs = functools.lru_cache(maxsize=4096)(_pairs)  # catalog keys: a bounded set


def _closest(key: str, candidates: tuple[str, ...]) -> list[str]:
    """The three candidates most like ``key`` by Dice's coefficient on character pairs,
    if at least half alike: set operations, about a microsecond a candidate (difflib's
    matcher took some 15 µs a candidate)."""
    mine = _pairs(key)
    scored = []
    for candidate in candidates:
        theirs = _candidate_pairs(candidate)
        scored.append((2 * len(mine & theirs) / (len(mine) + len(theirs)), candidate))
    return [candidate for score, candidate in heapq.nlargest(3, scored) if score >= 0.5]


def find_spec(plane: Plane, specs: Mapping[str, MetricSpec], key: object) -> MetricSpec:
    """The spec of ``key``, or UnknownMetricError naming the plane that has it, or else
    suggesting this plane's closest keys."""
    found = specs.get(key) if type(key) is str else None
    if found is not None:
        return found
    return _unknown(plane, specs, key)


def unknown_key_message(plane: Plane, specs: Mapping[str, MetricSpec], key: object) -> str:
    """Why ``key`` is not a metric of ``plane``, and what to do: record it on the plane
    that has it, or (a typo) use one of the closest keys of this plane."""
    owner = lookup(key) if type(key) is str else None
    if owner is not None and owner.plane is not plane:
        other = owner.plane.value
        article = "an" if other[0] in "aeiou" else "a"
        return f"{plane.value}: {key} is {article} {other} metric: record it on get_metrics({other!r})"
    return f"{plane.value}: unknown metric {safe_repr(key)}{did_you_mean(key, specs)}"


def _unknown(plane: Plane, specs: Mapping[str, MetricSpec], key: object) -> MetricSpec:
    raise UnknownMetricError(
        lambda: unknown_key_message(plane, specs, key),
        metric=safe_repr(key, 40),
        value=key,
    )


def label_value(s: MetricSpec, name: str, value: object) -> str:
    """``value`` as a plain ``str`` fit for a label, or LabelError.

    A ``str`` subclass (a ``StrEnum`` member, say) gives its characters; anything else
    that is not a string is refused. The text must be non-empty, at most
    MAX_LABEL_VALUE_LENGTH characters, and valid Unicode (no lone surrogates), so that
    every export path can encode it as UTF-8."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise _bad_label(s, name, value, "must be a non-empty string")
        value = str.__str__(value)  # the characters, whatever the subclass's __str__ says
    if not value:
        raise _bad_label(s, name, value, "must be a non-empty string")
    if len(value) > MAX_LABEL_VALUE_LENGTH:
        raise _bad_label(s, name, value, f"is longer than {MAX_LABEL_VALUE_LENGTH} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_label(s, name, value, "is not valid Unicode (a lone surrogate)") from None
    return value


def _bad_label(
    s: MetricSpec, name: str, value: object, problem: str, reason: str = "invalid_label_value"
) -> LabelError:
    return LabelError(
        lambda: f"{s.key}: label {name}={safe_repr(value)} {problem}",
        reason=reason,
        metric=s.key,
        label=name,
        value=value,
    )


def check_labels(s: MetricSpec, labels: Mapping[str, object]) -> dict[str, str]:
    """The labels as plain strings, if they are exactly the metric's labels and each
    value is fit for a label (:func:`label_value`); LabelError otherwise."""
    out: dict[str, str] = {}
    for name, value in labels.items():
        if type(name) is not str:
            name = str.__str__(name)
        if name not in s.labels:
            raise _not_allowed(s, name, value)
        text = out[name] = label_value(s, name, value)
        allowed = allowed_values(s, name)
        if allowed is not None and text not in allowed:
            raise _bad_label(s, name, value, f"is not one of the allowed values: {', '.join(sorted(allowed))}")
    for name in s.labels:
        if name not in out:
            raise LabelError(
                f"{s.key}: label {name!r} is missing; required labels: {', '.join(s.labels)}",
                reason="missing_label",
                metric=s.key,
                label=name,
            )
    return out


def _not_allowed(s: MetricSpec, name: str, value: object) -> LabelError:
    allowed = ", ".join(s.labels) or "none"
    extra = f" ({SERVICE_LABEL!r} is set by the SDK)" if name == SERVICE_LABEL else ""
    problem = f"is not allowed{extra}; allowed labels: {allowed}"
    return _bad_label(s, safe_repr(name, 40), value, problem, reason="unknown_label")


def check_value(s: MetricSpec, value: object) -> float | int | InvalidValueError:
    """``value`` as an int or float fit for the metric, or the InvalidValueError saying
    why not (returned, not raised: production mode only counts it).

    Other real numbers (Fraction, numpy scalars) become floats; bool, Decimal and
    non-numbers are refused, as are values that do not fit in a float."""
    kind = type(value)
    if kind is float or kind is int:
        number: float | int = value  # type: ignore[assignment]
    elif kind is bool or not isinstance(value, numbers.Real):
        return _invalid(s, value, "non_numeric", "is not a number")
    else:
        number = int(value) if isinstance(value, int) else float(value)
    if type(number) is int and not -_MAX <= number <= _MAX:
        return _invalid(s, value, "non_numeric", "is not a usable number (does not fit in a float)")
    if number != number or number in (_INF, -_INF):
        return _invalid(s, value, "non_finite", "is not finite")
    if s.kind is Kind.COUNTER and number < 0:
        return _invalid(s, value, "negative_increment", "is negative (a counter only goes up)")
    low = -math.inf if s.min_value is None else s.min_value
    high = math.inf if s.max_value is None else s.max_value
    if not low <= number <= high or (s.integral and number != int(number)):
        allowed = _allowed(low, high, s.integral)
        return _invalid(s, value, "out_of_range", f"is out of range; expected {allowed}")
    return number


def _allowed(low: float, high: float, integral: bool) -> str:
    """What a range allows, in words: its few whole numbers listed, else its bounds."""
    if integral and math.isfinite(low) and math.isfinite(high) and high - low <= 10:
        return f"one of {list(range(math.ceil(low), math.floor(high) + 1))}"
    return f"{'a whole number ' if integral else ''}within [{low}, {high}]"


def _invalid(s: MetricSpec, value: object, reason: str, problem: str) -> InvalidValueError:
    return InvalidValueError(
        lambda: f"{s.key}: value {safe_repr(value)} {problem}", reason=reason, metric=s.key, value=value
    )


def wrong_kind(s: MetricSpec, method: str, strict: bool) -> InvalidValueError:
    """The error of recording ``s`` with the wrong method. Production mode reuses one
    per (metric, method) (``STATE.wrong_kinds``, a bounded set), so a repeated mistake
    costs a lookup."""
    error = STATE.wrong_kinds.get((s.key, method)) if not strict else None
    if error is None:
        error = InvalidValueError(
            lambda: f"{s.key}: is a {s.kind.value}; record it with {s.kind.method}(), not {method}()",
            reason="wrong_kind",
            metric=s.key,
            value=None,
        )
        if not strict:
            STATE.wrong_kinds[(s.key, method)] = error
    return error


def unusable_number(s: MetricSpec, value: object) -> InvalidValueError:
    return InvalidValueError(
        lambda: f"{s.key}: value {safe_repr(value)} is not a usable number",
        reason="non_numeric",
        metric=s.key,
        value=value,
    )


def overflow(s: MetricSpec, value: float, total: str) -> InvalidValueError:
    """A value whose addition would make the series' running ``total`` (a counter's
    value, a histogram's sum) non-finite: dropped, so the series stays exportable."""
    return InvalidValueError(
        lambda: f"{s.key}: adding {safe_repr(value)} would make the {total} overflow a float",
        reason="overflow",
        metric=s.key,
        value=value,
    )
