"""The recording API: a plane's metrics object, handing out bound handles.

``metrics.inc(key, **labels)`` is a dict lookup of the call's key and labels in the plane's
series store (``_series``), then the handle's own fast path (``_handles``). Everything else
(the key, the labels, the cardinality limit) is checked off the hot path, by the store,
when a label set is first seen. A plane is built by ``_plane.build_plane``.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Tracer

from trading_telemetry._drops import DropPolicy
from trading_telemetry._handles import BoundMetric
from trading_telemetry._series import SeriesStore, plain_call
from trading_telemetry.catalog import Plane
from trading_telemetry.errors import InvalidInputError, MeasurementError

if TYPE_CHECKING:  # built when a plane is set up (the SDK, and prometheus_client for /metrics)
    from trading_telemetry._exposition import PlaneExposition
    from trading_telemetry._multiprocess import PlaneFiles
    from trading_telemetry._sdk import PlaneSDK

__all__ = ["BoundMetric", "PlaneMetrics"]


def _order_set(handles: Any) -> list[BoundMetric]:
    """Every bound handle of one of OrderLifecycle's shared handle sets."""
    out = [handles.received, handles.submitted, handles.canceled, handles.expired, handles.slippage]
    out += [handles.commission, *handles.latencies]
    for kept in (handles.filled, handles.rejected, handles.denied):
        out += kept.values()
    return out


class PlaneMetrics:
    """The metrics of one plane, as the original monitoring specification's API records them.

    Create it with :func:`trading_telemetry.init_metrics_exporter`. Every call names a
    catalog key and passes exactly that metric's labels; the ``service`` label is set
    to the plane's name by the SDK.

    Example::

        metrics = init_metrics_exporter("data_plane")
        metrics.inc("ticks_received", source="ibkr_rt", symbol="SPY")
        metrics.observe("data_freshness", 0.150, source="ibkr_rt", symbol="SPY")
        metrics.set("completeness_score", 0.95, symbol="SPY")

    A bad call (unknown key, wrong labels, a bad value) raises a
    :class:`~trading_telemetry.errors.MeasurementError` in strict mode; in production
    mode it is dropped, counted in ``trading_telemetry_dropped_measurements_total`` and
    logged at most once a minute, and never raises.
    """

    def __init__(self, sdk: PlaneSDK, store: SeriesStore, policy: DropPolicy, files: PlaneFiles | None) -> None:
        self.plane: Plane = store.plane
        self.sdk = sdk
        """The plane's OpenTelemetry SDK objects (providers, exporters) and their state."""
        self.store = store
        """The plane's series (internal: the exposition and the SDK's views read it)."""
        self.policy = policy
        """What happens to bad input (internal: use :meth:`reject` and :meth:`record_failure`)."""
        self.multiprocess = files
        """The plane's files in TRADING_TELEMETRY_MULTIPROCESS_DIR, or None (one process)."""
        self.exposition: PlaneExposition | None = None
        """What ``/metrics`` serves: rendered from the handles (in multiprocess mode, from
        every process's files); None when the ``prometheus`` exporter is off."""
        self.tracer: Tracer | None = None
        """The plane's tracer, or None when tracing is off (no span exporter configured)."""
        self.order_handles: dict[tuple[Any, ...], Any] = {}
        """OrderLifecycle's shared handle sets, by (strategy, symbol, direction, order type)."""
        self._handle_caches: weakref.WeakSet[Any] = weakref.WeakSet()
        self._handle_caches_lock = threading.Lock()
        self._calls = store.calls
        self._bind = store.bind

    @property
    def strict(self) -> bool:
        return self.policy.strict

    # The call cache is keyed by (key, *label names, *label values). Only plain strings (and
    # the built-in int, float, bool, None of a cached rejected call) may key it: any other
    # object could pass for a cached string through its __eq__ and __hash__, so a call made
    # with one is first rewritten by _plain_call (a str subclass gives its characters), and
    # one that holds anything else is judged by _bind. A call of plain strings costs a type
    # check per part and one dict lookup.

    def inc(self, key: str, value: float = 1, /, **labels: str) -> None:
        """Add ``value`` (default 1) to the counter ``key``."""
        call = (key, *labels, *labels.values())
        for part in call:
            if type(part) is not str:
                call = plain_call(call)
                break
        try:
            handle = self._calls[call]
        except KeyError:
            handle = self._bind(key, labels)
        handle.inc(value)

    def observe(self, key: str, value: float, /, **labels: str) -> None:
        """Record ``value`` in the histogram ``key``."""
        call = (key, *labels, *labels.values())
        for part in call:
            if type(part) is not str:
                call = plain_call(call)
                break
        try:
            handle = self._calls[call]
        except KeyError:
            handle = self._bind(key, labels)
        handle.observe(value)

    def set(self, key: str, value: float, /, **labels: str) -> None:
        """Set the gauge ``key`` to ``value``."""
        call = (key, *labels, *labels.values())
        for part in call:
            if type(part) is not str:
                call = plain_call(call)
                break
        try:
            handle = self._calls[call]
        except KeyError:
            handle = self._bind(key, labels)
        handle.set(value)

    def bind(self, key: str, /, **labels: str) -> BoundMetric:
        """The metric ``key`` bound to ``labels``, for hot loops.

        In strict mode a bad key or label set raises here; in production mode the
        returned handle drops (and counts) every measurement instead.
        """
        return self._bind(key, labels)

    def retire(self, key: str | None = None, /, **labels: str) -> int:
        """Remove the series of ``key`` (of every metric of the plane when None) whose labels
        include all of ``labels``; how many were removed.

        ``metrics.retire(symbol="ESZ6")`` removes an expired contract's series,
        ``metrics.retire(strategy="mom_1")`` a stopped strategy's,
        ``metrics.retire("pnl_unrealized", strategy="mom_1")`` one metric's. A removed series
        leaves /metrics and the push exports, frees its place under the cardinality limit,
        and its bound handles record nothing (each use is a drop, reason ``retired``); the
        next recording with the same labels starts a new series from zero. A call that
        names nothing, an unknown key or a label the metrics do not have is bad input
        (strict mode raises; production mode drops and counts it, and returns 0), as is
        any call in multiprocess mode, where nothing is removed."""
        try:
            removed = self.store.retire(key, labels)
        except MeasurementError as error:
            self.policy.reject(error)
            return 0
        except Exception as error:  # noqa: BLE001 - a hostile label value
            self.policy.failed(error, key if type(key) is str else "retire")
            return 0
        return self._retired(removed)

    def retire_idle(self, older_than_seconds: float) -> int:
        """Retire the series that have not changed (a counter's total, a gauge's value, a
        histogram's count and sum) for ``older_than_seconds``, as far as this method has
        seen: call it periodically (a series is retired by the first call at least that
        long after the call that first saw it unchanged); how many were removed. A gauge
        set again to the same value counts as unchanged. Bad input as for :meth:`retire`."""
        try:
            number = float(older_than_seconds)
            if type(older_than_seconds) is bool or not 0 <= number < math.inf:
                raise InvalidInputError(
                    lambda: f"retire_idle: older_than_seconds={older_than_seconds!r} is not a finite number >= 0",
                    metric="retire_idle",
                    value=older_than_seconds,
                )
            removed = self.store.retire_idle(number, time.monotonic())
        except MeasurementError as error:
            self.policy.reject(error)
            return 0
        except Exception as error:  # noqa: BLE001 - a hostile argument
            self.policy.failed(error, "retire_idle")
            return 0
        return self._retired(removed)

    def _retired(self, removed: list[BoundMetric]) -> int:
        """How many series were removed, once the package's own handle caches forget them."""
        if removed and self.order_handles:
            # OrderLifecycle's shared handle sets holding a removed series are made anew.
            for kept, handles in list(self.order_handles.items()):
                if any(handle.retired for handle in _order_set(handles)):
                    self.order_handles.pop(kept, None)
        if removed:
            with self._handle_caches_lock:
                caches = list(self._handle_caches)
            for cache in caches:
                cache.forget_retired()
        return len(removed)

    def after_fork(self) -> None:
        """In a forked child: a new lock for the handle caches (a parent's thread may have held it)."""
        self._handle_caches_lock = threading.Lock()

    def keep_informed(self, cache: Any) -> None:
        """``cache`` (a ``timed``) keeps handles of this plane: after each retirement its
        ``forget_retired()`` is called, to drop those removed. Held weakly."""
        with self._handle_caches_lock:
            self._handle_caches.add(cache)

    def count_drop(self, key: str, reason: str) -> None:
        """Count a figure of ``key`` that could not be computed (``reason``: ``no_rate``,
        ``no_mark``, ...) in the drop self-metric; the caller logs it. Never raises."""
        self.policy.count(key, reason)

    def series_count(self, key: str) -> int:
        """How many label sets ``key`` has recorded (what the cardinality limit counts)."""
        return self.store.count(key)

    # The package's own recording paths (OrderLifecycle, timed, the NautilusTrader actor)
    # hand what they cannot record to the plane's drop policy through these two.

    def reject(self, error: MeasurementError) -> None:
        """Bad input: raised in strict mode; in production mode dropped, counted and logged."""
        self.policy.reject(error)

    def record_failure(self, error: BaseException, key: str) -> None:
        """An exception escaped the recording code of ``key`` (a hostile argument): strict
        mode raises it as a MeasurementError; production mode drops, counts and logs it."""
        self.policy.failed(error, key)

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` returns: ``status`` is ``ok``, ``degraded`` (a push
        exporter is failing; pull still works), ``disabled`` or ``stopped``."""
        exporters = self.sdk.exporter_states()
        if self.sdk.stopped:
            status = "stopped"
        elif self.sdk.config.sdk_disabled:
            status = "disabled"
        elif any(e["state"] == "failing" for e in exporters.values()):
            status = "degraded"
        else:
            status = "ok"
        health = {
            "status": status,
            "plane": self.plane.value,
            "uptime_seconds": self.uptime(),
            "exporters": exporters,
            "dropped_measurements": self.policy.dropped,
            "strict": self.policy.strict,
        }
        if self.multiprocess is not None:
            health["multiprocess"] = self.multiprocess.state()
            if self.multiprocess.failed and status == "ok":  # this process's counts are not in the sum
                health["status"] = "degraded"
        return health

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Push what has been recorded now, without waiting for the export interval."""
        from opentelemetry.sdk.metrics import MeterProvider

        provider = self.sdk.meter_provider
        return bool(provider.force_flush(timeout_millis)) if isinstance(provider, MeterProvider) else True

    def uptime(self) -> float:
        """Seconds since the plane started (monotonic clock)."""
        return round(time.monotonic() - self.sdk.started, 3)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush push exporters and stop the plane's SDK (idempotent), waiting at most
        ``timeout`` seconds (default TRADING_TELEMETRY_SHUTDOWN_TIMEOUT); whether it
        finished in time. The data plane's session gauges stop refreshing."""
        from trading_telemetry._globals import STATE

        gauges = STATE.session_gauges
        if gauges is not None and gauges.metrics is self:
            gauges.stop(0)
        thread = self.sdk.shutdown()
        if thread is None:
            return True
        thread.join(self.sdk.config.shutdown_timeout_ms / 1000 if timeout is None else timeout)
        return not thread.is_alive()

    def __repr__(self) -> str:
        return f"<PlaneMetrics {self.plane.value} exporters={list(self.sdk.exporter_states())}>"
