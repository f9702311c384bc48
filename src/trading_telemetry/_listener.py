"""waitress, bounded: what one client, or many, can hold of the /metrics and /health listener.

waitress's own hooks are used: its ``Adjustments``, and subclasses of its server, channel,
task, request parser and task dispatcher, each overriding one documented step:

- one request per connection: every answer says ``Connection: close``, and bytes sent after
  a complete request (pipelining) are ignored, so a connection never queues answers and a
  handler's write never waits for its client (``_Request``, ``_Task``);
- a handler hands a finished body to the event loop and returns (a single write, the body
  shared, not copied); the loop drops a connection whose client has not taken its answer
  within ``send_timeout`` (``ListenerServer.maintenance``);
- a request's headers (and body, at most 64 KiB) must arrive within ``header_timeout`` of
  its first byte, however slowly its bytes trickle in (``ListenerServer.maintenance``);
- at the connection limit a waiting connection makes room: the oldest connections that have
  not completed a request go (one accepted less than a second ago only after the rest),
  else those that have waited longest for their client to take an answer; connections
  whose request a handler has are never closed (``ListenerServer.handle_accept``);
- ``/health`` goes to the front of the handlers' queue; a queue deeper than the idle
  handlers is counted for ``/health`` and logged at most once a minute (``Dispatcher``).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask

__all__ = ["Dispatcher", "ListenerServer", "ListenerStats", "close_all"]

QUEUE_LOG_INTERVAL_S = 60.0
"""A deep handler queue is logged at most once in this many seconds (always counted)."""

ACCEPTS_PER_PASS = 32
"""Connections accepted in one pass of the event loop, at most."""
EVICTION_GRACE_S = 1.0
"""A connection this young that has not completed a request yet is closed to make room
only after the answered ones: a client that has just connected gets time to ask."""

queue_logger = logging.getLogger("waitress.queue")


@dataclass
class ListenerStats:
    """What the listener did to protect itself, for ``/health``."""

    evicted: int = 0
    header_timeouts: int = 0
    send_timeouts: int = 0
    queued: int = 0
    queue_depth_max: int = 0

    def state(self, connections: int, limit: int) -> dict[str, int]:
        return {
            "connections": connections,
            "connection_limit": limit,
            "evicted_at_limit": self.evicted,
            "header_timeouts": self.header_timeouts,
            "send_timeouts": self.send_timeouts,
            "requests_queued": self.queued,
            "queue_depth_max": self.queue_depth_max,
        }


class _Request(HTTPRequestParser):
    """A request that remembers when it was complete, and ends its connection's input:
    whatever follows it in the same read (a pipelined request) is consumed unread."""

    completed_at = 0.0

    def received(self, data: bytes) -> int:
        used = int(super().received(data))
        if self.completed:
            self.completed_at = time.monotonic()
            return len(data)
        return used


class _Task(WSGITask):
    """Every answer closes its connection; the handler learns when its request was complete."""

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ["trading_telemetry.received"] = cast(_Request, self.request).completed_at
        return environ

    def build_response_header(self) -> bytes:
        cast(Any, self.request).headers["CONNECTION"] = "close"  # as if the client had asked
        return bytes(super().build_response_header())


class _Channel(HTTPChannel):
    """A connection that serves one request, stamped for the server's time limits."""

    task_class = _Task
    parser_class = _Request
    started = 0.0  # monotonic time the connection was accepted
    request_started = 0.0  # monotonic time of the current request's first byte
    answered_at = 0.0  # monotonic time its answer was handed to the loop; 0 before

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.started = time.monotonic()
        super().__init__(*args, **kwargs)

    def received(self, data: bytes) -> bool:
        if self.requests or self.answered_at:  # one request per connection: the rest is ignored
            return False
        if self.request is None:
            self.request_started = time.monotonic()
        return bool(super().received(data))

    def service(self) -> None:
        self.answered_at = time.monotonic()  # set first: the connection never looks unanswered again
        super().service()
        self.answered_at = time.monotonic()

    # A connection closed by the server's maintenance while the loop is asking every
    # connection what to poll for must not be polled: its descriptor number may be
    # reused by a connection accepted in the same pass.
    def readable(self) -> bool:
        return getattr(self, "_fileno", None) is not None and bool(super().readable())

    def writable(self) -> bool:
        return getattr(self, "_fileno", None) is not None and bool(super().writable())


class Dispatcher(ThreadedTaskDispatcher):
    """waitress's handler pool, with ``/health`` first in the queue and the queue-depth
    warning counted and throttled instead of logged for every queued request."""

    def __init__(self, stats: ListenerStats) -> None:
        super().__init__()
        self.stats = stats
        self._next_log = 0.0
        self._unlogged = 0

    def add_task(self, task: Any) -> None:
        with self.lock:
            if _is_health(task):
                self.queue.appendleft(task)
            else:
                self.queue.append(task)
            self.queue_cv.notify()
            depth = len(self.queue) - (len(self.threads) - self.stop_count - self.active_count)
            if depth <= 0:
                return
            self.stats.queued += 1
            self.stats.queue_depth_max = max(self.stats.queue_depth_max, depth)
            self._unlogged += 1
            now = time.monotonic()
            if now < self._next_log:
                return
            self._next_log = now + QUEUE_LOG_INTERVAL_S
            unlogged, self._unlogged = self._unlogged, 0
            queue_logger.warning(
                "Task queue depth is %d (%d request(s) waited for a handler thread since the last report; "
                "at most one report a minute, counts in /health)",
                depth,
                unlogged,
            )


def _is_health(channel: Any) -> bool:
    requests = getattr(channel, "requests", None)
    return bool(requests) and getattr(cast(list[Any], requests)[0], "path", "") == "/health"


class ListenerServer(TcpWSGIServer):
    """waitress's TCP server with the time limits, one request per connection, and room
    made at the connection limit."""

    channel_class = _Channel
    effective_port: int | str  # set by waitress

    def __init__(
        self,
        application: Callable[..., Iterable[bytes]],
        socket_map: dict[int, Any],
        adj: Adjustments,
        dispatcher: Dispatcher,
        header_timeout: float,
        send_timeout: float,
    ) -> None:
        self.header_timeout = header_timeout
        self.send_timeout = send_timeout
        self.stats: ListenerStats = dispatcher.stats
        self.socket_map = socket_map  # the listener, waitress's trigger and the connections
        self._next_maintenance = 0.0
        self._pull_lock = threading.Lock()  # a pull and the closing of the trigger's pipe never overlap
        self._pipe_closed = False
        super().__init__(application, map=socket_map, adj=adj, dispatcher=dispatcher)

    def pull_trigger(self) -> None:
        """Wake the event loop (a handler does, when its answer is ready), never once the
        trigger's pipe is closed: a handler that finishes while the server stops would
        write to a closed descriptor, or to whatever file has since been given its number."""
        with self._pull_lock:
            if not self._pipe_closed:
                cast(Any, self.trigger).pull_trigger()

    def stop(self) -> None:
        """From any thread: close the listener, every connection and the trigger, in the
        event loop's own thread (a socket is never touched by two threads); the loop then
        ends, having nothing left to poll."""

        def close_everything() -> None:
            with self._pull_lock:  # a pull under way ends first; none starts after
                self._pipe_closed = True
            # Outside the lock: closing a connection takes its buffer lock, which a handler
            # may hold while it pulls (waitress's write_soon).
            close_all(self.socket_map)

        trigger = cast(Any, self.trigger)
        with trigger.lock:
            trigger.thunks.append(close_everything)
        self.pull_trigger()

    def channels(self) -> list[_Channel]:
        return list(cast("dict[int, _Channel]", self.active_channels).values())

    def state(self) -> dict[str, int]:
        return self.stats.state(len(cast("dict[int, _Channel]", self.active_channels)), self.adj.connection_limit)

    def readable(self) -> bool:
        """Run maintenance when due; accept while under the limit, or at it while some
        connection can make room (otherwise the listener is not polled: no spinning)."""
        now = time.time()
        if now >= self._next_maintenance:
            self._next_maintenance = now + self.adj.cleanup_interval
            self.maintenance(cast(int, now))  # waitress's own clock, time.time()
        if not self.accepting:
            return False
        return len(self.socket_map) < self.adj.connection_limit or bool(self._victims(1))

    def handle_accept(self) -> None:
        """Accept up to ACCEPTS_PER_PASS waiting connections (waitress takes one a pass of
        the loop, and a pass polls every connection). At the limit with a connection
        waiting, close a few to make room, and accept on the next pass: never in the same
        pass, where an event already polled for a closed descriptor would go to the new
        connection given that descriptor."""
        limit = self.adj.connection_limit
        for attempt in range(ACCEPTS_PER_PASS):
            held = len(self.socket_map)
            if held >= limit:
                if attempt == 0:  # the listener was polled readable: someone is waiting
                    for victim in self._victims(max(1, min(ACCEPTS_PER_PASS, limit // 8))):
                        victim.handle_close()
                        self.stats.evicted += 1
                return
            super().handle_accept()
            if len(self.socket_map) == held:  # nothing more waiting
                return

    def _victims(self, count: int) -> list[_Channel]:
        """The ``count`` connections to close to make room. Never one whose request a
        handler has; first the oldest that have not completed a request in a second, then
        the answered ones that have waited longest for their client, then the newest."""
        young = time.monotonic() - EVICTION_GRACE_S
        keyed: list[tuple[tuple[int, float], _Channel]] = []
        for channel in self.channels():
            if channel.requests:
                continue
            if channel.answered_at:
                keyed.append(((1, channel.answered_at), channel))
            else:
                keyed.append(((0 if channel.started < young else 2, channel.started), channel))
        return [channel for _, channel in heapq.nsmallest(count, keyed, key=lambda item: item[0])]

    def maintenance(self, now: int) -> None:
        """A request not received whole within ``header_timeout`` of its first byte, or an
        answer not taken within ``send_timeout``, closes its connection; then waitress's
        idle timeout. Closed here, not marked for closing: a connection whose client does
        not read is never writable, and waitress closes a marked one only when writable."""
        mono = time.monotonic()
        for channel in self.channels():
            if channel.requests:
                continue
            if channel.answered_at:
                if channel.total_outbufs_len and mono - channel.answered_at > self.send_timeout:
                    channel.handle_close()
                    self.stats.send_timeouts += 1
            elif channel.request is not None and mono - channel.request_started > self.header_timeout:
                channel.handle_close()
                self.stats.header_timeouts += 1
        super().maintenance(now)


def close_all(channels: dict[int, Any]) -> None:
    """Close the listener and every connection; a connection's response buffers too
    (``handle_close``: they may be temporary files)."""
    for channel in list(channels.values()):
        with contextlib.suppress(Exception):
            if isinstance(channel, HTTPChannel):
                channel.handle_close()
            else:
                channel.close()
    channels.clear()
