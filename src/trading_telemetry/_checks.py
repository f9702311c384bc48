"""Validation of keys, labels and values, raising the package's MeasurementErrors.

Only called off the hot path: when a label set is first bound, and when a value fails
the handles' one-comparison fast check.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Mapping

from trading_telemetry.catalog import SERVICE_LABEL, Kind, MetricSpec, Plane
from trading_telemetry.errors import InvalidValueError, LabelError, UnknownMetricError


def did_you_mean(key: object, keys: Iterable[str]) -> str:
    """``"; did you mean 'a', 'b'?"`` with the keys closest to ``key``, or ``""``."""
    close = difflib.get_close_matches(str(key), list(keys), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(k) for k in close)}?" if close else ""


def find_spec(plane: Plane, specs: Mapping[str, MetricSpec], key: object) -> MetricSpec:
    """The spec of ``key``, or UnknownMetricError suggesting the closest keys."""
    found = specs.get(key) if isinstance(key, str) else None
    if found is not None:
        return found
    hint = did_you_mean(key, specs)
    raise UnknownMetricError(f"{plane.value}: unknown metric {key!r}{hint}", metric=str(key), value=key)


def check_labels(s: MetricSpec, labels: Mapping[str, object]) -> None:
    """Raise LabelError unless ``labels`` are exactly the metric's labels, each a
    non-empty string."""
    for name, value in labels.items():
        if name not in s.labels:
            allowed = ", ".join(s.labels) or "none"
            extra = f" ({SERVICE_LABEL!r} is set by the SDK)" if name == SERVICE_LABEL else ""
            raise LabelError(
                f"{s.key}: label {name}={value!r} is not allowed{extra}; allowed labels: {allowed}",
                reason="unknown_label",
                metric=s.key,
                label=name,
                value=value,
            )
        if not isinstance(value, str) or not value:
            raise LabelError(
                f"{s.key}: label {name}={value!r} must be a non-empty string",
                reason="invalid_label_value",
                metric=s.key,
                label=name,
                value=value,
            )
    for name in s.labels:
        if name not in labels:
            raise LabelError(
                f"{s.key}: label {name!r} is missing; required labels: {', '.join(s.labels)}",
                reason="missing_label",
                metric=s.key,
                label=name,
            )


def check_value(s: MetricSpec, value: object) -> float | int:
    """Return ``value`` as a number fit for the metric, or raise InvalidValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidValueError(
            f"{s.key}: value {value!r} is not a number", reason="non_numeric", metric=s.key, value=value
        )
    number: float = value if isinstance(value, int | float) else float(value)
    if not math.isfinite(number):
        raise InvalidValueError(
            f"{s.key}: value {value!r} is not finite", reason="non_finite", metric=s.key, value=value
        )
    if s.kind is Kind.COUNTER and number < 0:
        raise InvalidValueError(
            f"{s.key}: counter increment {value!r} is negative", reason="negative_increment", metric=s.key, value=value
        )
    low = -math.inf if s.min_value is None else s.min_value
    high = math.inf if s.max_value is None else s.max_value
    if not low <= number <= high or (s.integral and number != int(number)):
        allowed = f"one of {list(range(int(low), int(high) + 1))}" if s.integral else f"within [{low}, {high}]"
        raise InvalidValueError(
            f"{s.key}: value {value!r} is out of range; expected {allowed}",
            reason="out_of_range",
            metric=s.key,
            value=value,
        )
    return number


def wrong_kind(s: MetricSpec, method: str, value: object) -> InvalidValueError:
    return InvalidValueError(
        f"{s.key}: is a {s.kind.value}; record it with {s.kind.method}(), not {method}()",
        reason="wrong_kind",
        metric=s.key,
        value=value,
    )


def unusable_number(s: MetricSpec, value: object) -> InvalidValueError:
    return InvalidValueError(
        f"{s.key}: value {value!r} is not a usable number", reason="non_numeric", metric=s.key, value=value
    )
