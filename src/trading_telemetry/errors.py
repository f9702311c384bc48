"""The package's exceptions: one base class, a subclass per kind of mistake.

Set-up mistakes (:class:`ConfigError`, :class:`UnknownPlaneError`, :class:`CatalogError`)
are always raised. A bad measurement (:class:`MeasurementError` and its subclasses) is
raised only in strict mode; in production mode it is dropped and counted instead.
"""

from __future__ import annotations

__all__ = [
    "CardinalityLimitError",
    "CatalogError",
    "ConfigError",
    "InstrumentationError",
    "InvalidValueError",
    "LabelError",
    "MeasurementError",
    "TradingTelemetryError",
    "UnknownMetricError",
    "UnknownPlaneError",
]


class TradingTelemetryError(Exception):
    """Base class of every error this package raises."""


class ConfigError(TradingTelemetryError, ValueError):
    """A configuration value is invalid. The message names the variable and the value."""

    def __init__(self, variable: str, value: object, problem: str) -> None:
        self.variable = variable
        self.value = value
        super().__init__(f"{variable}={value!r}: {problem}")


class UnknownPlaneError(TradingTelemetryError, ValueError):
    """A plane name that is not one of ``data_plane``, ``order_plane``, ``strategy_plane``."""


class InstrumentationError(TradingTelemetryError, TypeError):
    """A decorator or helper set up wrongly (a key that is not a histogram, a label the
    metric does not allow, an argument the function does not have): raised when
    decorating, never on the hot path."""


class CatalogError(TradingTelemetryError):
    """The metric catalog contradicts itself (a bug in the package, caught at import)."""


class MeasurementError(TradingTelemetryError, ValueError):
    """A measurement that cannot be recorded.

    ``reason`` is the value of the ``reason`` label under which production mode counts
    the drop; ``metric``, ``label`` and ``value`` say what was wrong.
    """

    reason = "invalid"

    def __init__(self, message: str, *, metric: str, label: str | None = None, value: object = None) -> None:
        self.metric = metric
        self.label = label
        self.value = value
        super().__init__(message)


class UnknownMetricError(MeasurementError):
    """No metric of that key in the plane; the message suggests the closest keys."""

    reason = "unknown_metric"


class LabelError(MeasurementError):
    """A label that the metric does not allow, one it requires but did not get, or a
    label value that is not a non-empty string."""

    def __init__(self, message: str, *, reason: str, metric: str, label: str, value: object = None) -> None:
        super().__init__(message, metric=metric, label=label, value=value)
        self.reason = reason


class InvalidValueError(MeasurementError):
    """A value that is not a finite number, a negative counter increment, a value outside
    the metric's documented range, or the wrong method for the metric's kind."""

    def __init__(self, message: str, *, reason: str, metric: str, value: object) -> None:
        super().__init__(message, metric=metric, value=value)
        self.reason = reason


class CardinalityLimitError(MeasurementError):
    """A new label set beyond the metric's cardinality limit."""

    reason = "cardinality_limit"
