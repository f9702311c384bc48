"""The package's exceptions: one base class, a subclass per kind of mistake.

Set-up mistakes (:class:`ConfigError`, :class:`UnknownPlaneError`, :class:`CatalogError`,
:class:`ServerAddressError`) are always raised. A bad measurement (:class:`MeasurementError` and its subclasses) is
raised only in strict mode; in production mode it is dropped and counted instead.
"""

from __future__ import annotations

from collections.abc import Callable

from trading_telemetry._safe import safe_repr, safe_str

__all__ = [
    "CardinalityLimitError",
    "CatalogError",
    "ConfigError",
    "InstrumentationError",
    "InvalidInputError",
    "InvalidValueError",
    "LabelError",
    "MeasurementError",
    "RetireUnsupportedError",
    "RetiredSeriesError",
    "ServerAddressError",
    "TradingTelemetryError",
    "UnknownMetricError",
    "UnknownPlaneError",
]


class TradingTelemetryError(Exception):
    """Base class of every error this package raises."""


class ConfigError(TradingTelemetryError, ValueError):
    """A configuration value is invalid. The message names the variable and the value,
    except for values that may hold secrets (headers), which are never echoed."""

    def __init__(self, variable: str, value: object, problem: str, *, secret: bool = False) -> None:
        self.variable = variable
        self.problem = problem
        self.value = None if secret else value
        shown = "<redacted>" if secret else safe_repr(value, 200)
        super().__init__(f"{variable}={shown}: {problem}")


class ServerAddressError(TradingTelemetryError, OSError):
    """A plane's /metrics and /health server cannot listen on its host and port: the
    port is taken, the host is not this machine's, or the port needs privileges. The
    message names the plane, the host:port and the fix; ``errno`` is the socket's error
    number (``errno.EADDRINUSE`` for a taken port), None if the address did not resolve.
    An ``OSError``, as the error it replaces."""

    def __init__(self, message: str, *, plane: str, host: str, port: int, errno: int | None) -> None:
        super().__init__(message)
        self.plane = plane
        self.host = host
        self.port = port
        self.errno = errno


class UnknownPlaneError(TradingTelemetryError, ValueError):
    """A plane name that is not one of ``data_plane``, ``order_plane``, ``strategy_plane``."""


class InstrumentationError(TradingTelemetryError, TypeError):
    """A decorator or helper set up wrongly (a key that is not a histogram, a label the
    metric does not allow, an argument the function does not have): raised when
    decorating, never on the hot path."""


class CatalogError(TradingTelemetryError):
    """A catalog declaration that cannot be used: a desk's extension or catalog file
    (raised by ``extend()`` or when the file is loaded, before anything is added), or a
    bug in the built-in catalog (caught at import). ``source`` is the file (or
    ``extend()``), ``entry`` the declaration, ``field`` its field: None where they do not
    apply. The message names them and the value."""

    def __init__(
        self, message: str, *, source: str | None = None, entry: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.source = source
        self.entry = entry
        self.field = field


class MeasurementError(TradingTelemetryError, ValueError):
    """A measurement that cannot be recorded.

    ``reason`` is the value of the ``reason`` label under which production mode counts
    the drop; ``metric``, ``label`` and ``value`` say what was wrong. The message may be
    given as a function: it is then built only when read (production mode drops most
    errors unread), and a message that fails to build is replaced, never raised.
    """

    reason = "invalid"

    def __init__(
        self, message: str | Callable[[], str], *, metric: str, label: str | None = None, value: object = None
    ) -> None:
        self.metric = metric
        self.label = label
        self.value = value
        self._message = message
        super().__init__()

    def __str__(self) -> str:
        message = self._message
        if not isinstance(message, str):
            try:
                message = message()
            except Exception:  # noqa: BLE001 - an error message must never raise
                message = f"{self.metric}: bad measurement ({self.reason})"
            self._message = message
        return message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({safe_str(self)!r})"


class UnknownMetricError(MeasurementError):
    """No metric of that key in the plane; the message names the plane that has it, or
    else suggests the plane's closest keys."""

    reason = "unknown_metric"


class LabelError(MeasurementError):
    """A label that the metric does not allow, one it requires but did not get, or a
    label value that is not a non-empty string of valid Unicode within the length limit."""

    def __init__(
        self, message: str | Callable[[], str], *, reason: str, metric: str, label: str, value: object = None
    ) -> None:
        super().__init__(message, metric=metric, label=label, value=value)
        self.reason = reason


class InvalidValueError(MeasurementError):
    """A value that is not a finite number, a negative counter increment, a value outside
    the metric's documented range, or the wrong method for the metric's kind."""

    def __init__(self, message: str | Callable[[], str], *, reason: str, metric: str, value: object) -> None:
        super().__init__(message, metric=metric, value=value)
        self.reason = reason


class CardinalityLimitError(MeasurementError):
    """A new label set beyond the metric's cardinality limit."""

    reason = "cardinality_limit"


class InvalidInputError(MeasurementError):
    """An argument that broke the recording code itself (an object whose ``__hash__``,
    ``__eq__`` or ``__str__`` raises, say): dropped as ``invalid_input``."""

    reason = "invalid_input"


class RetiredSeriesError(MeasurementError):
    """A bound handle of a series that ``retire`` removed: the handle records nothing;
    a recording call (or ``bind``) with the same labels starts a new series from zero."""

    reason = "retired"


class RetireUnsupportedError(MeasurementError):
    """``retire`` on a plane in multiprocess mode, whose series live in every process's
    file: nothing is removed."""

    reason = "retire_unsupported"
