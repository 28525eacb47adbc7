"""Prometheus metrics of the app server and of Django, recorded the same way under either server.

On when METRICS_BIND is set (`make up MONITORING=1` sets it). Every worker process records into
files under PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode); stack/exporter.py
adds them up, with what the server itself knows, and serves them on METRICS_BIND. Off, nothing
here touches a request.

What is recorded here, and why here:
- appserver_busy_threads and appserver_request_duration_seconds{status}: timed around the WSGI
  call (stack/wsgi.py), the same code under both servers. Neither server offers both: gunicorn's
  statsd output needs a statsd exporter, which Debian does not package, and uWSGI's stats server
  counts requests without their status.
- appserver_queued_requests{where="worker"}: gunicorn's gthread worker accepts at once and queues
  the connection for a thread, where no listen backlog shows it (gunicorn.conf.py counts it).
- appserver_worker_restarts_total under gunicorn: its child_exit hook (uWSGI's master counts them).
- django_view_duration_seconds{view,method} and django_db_queries_per_request{view}: the
  middleware below (the view's URL pattern as the label, so the label's values are bounded).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ENABLED = bool(os.environ.get("METRICS_BIND"))

# Seconds; the budget (REQUEST_TIMEOUT, 30 s shipped) is the last finite bucket.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
QUERY_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100)


_made: SimpleNamespace | None = None
_making = threading.Lock()


def _m() -> SimpleNamespace:
    """The metrics, made on first use (once, though threads race to it): in the server's
    processes, never in manage.py's."""
    global _made
    if _made is None:
        with _making:
            if _made is None:
                _made = _make()
    return _made


def _make() -> SimpleNamespace:
    from prometheus_client import Counter, Gauge, Histogram

    # The entrypoints make it (prepare_dir); a server started some other way has not.
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

    return SimpleNamespace(
        busy=Gauge(
            "appserver_busy_threads", "Requests being handled (threads or greenlets busy)", multiprocess_mode="livesum"
        ),
        queued=Gauge(
            "appserver_queued_requests", "Requests waiting for a thread", ["where"], multiprocess_mode="livesum"
        ),
        requests=Histogram(
            "appserver_request_duration_seconds",
            "From the server's call into the app to the response's last byte, by status",
            ["status"],
            buckets=REQUEST_BUCKETS,
        ),
        restarts=Counter("appserver_worker_restarts", "Worker processes that exited (gunicorn's child_exit)"),
        view=Histogram(
            "django_view_duration_seconds",
            "Django's handling of a request, by view (URL pattern) and method",
            ["view", "method"],
            buckets=REQUEST_BUCKETS,
        ),
        queries=Histogram(
            "django_db_queries_per_request", "Database queries per request, by view", ["view"], buckets=QUERY_BUCKETS
        ),
    )


def prepare_dir() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR before the server starts: files of an earlier run would count."""
    if not ENABLED:
        return
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def instrument(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """The WSGI app, timed from the call to the response's close, by status."""
    if not ENABLED:
        return app

    def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["000"]  # no status sent: the app raised before start_response

        def recording_start_response(line: str, headers: list, exc_info: Any = None) -> Any:
            status[0] = line[:3]
            return start_response(line, headers, exc_info)

        def done() -> None:
            _m().busy.dec()
            _m().requests.labels(status[0]).observe(time.perf_counter() - started)

        _m().busy.inc()
        try:
            body = app(environ, recording_start_response)
        except BaseException:
            done()
            raise
        return _ClosingBody(body, done)

    return timed


class _ClosingBody:
    """The response body, unchanged, with a callback when the server closes it (WSGI's close())."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self.body = body
        self.on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.on_close()


def connection_queued(change: int) -> None:
    """gunicorn's gthread worker: +1 when a connection waits for a thread, -1 when one takes it."""
    if ENABLED:
        _m().queued.labels("worker").inc(change)


def worker_exited(pid: int) -> None:
    """gunicorn's master, when a worker has exited: count it, and drop its live gauges."""
    if ENABLED:
        from prometheus_client import multiprocess

        _m().restarts.inc()
        multiprocess.mark_process_dead(pid)


class ViewMetricsMiddleware:
    """Per view: how long Django took, and how many database queries the request made."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:  # HttpRequest in, HttpResponse out
        from django.db import connection

        queries = 0

        def count(execute: Callable[..., Any], *args: Any) -> Any:
            nonlocal queries
            queries += 1
            return execute(*args)

        started = time.perf_counter()
        with connection.execute_wrapper(count):
            response = self.get_response(request)
        match = request.resolver_match
        view = match.route if match is not None else "<unmatched>"
        _m().view.labels(view, request.method).observe(time.perf_counter() - started)
        _m().queries.labels(view).observe(queries)
        return response
