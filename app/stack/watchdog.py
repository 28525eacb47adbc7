"""Recycle a worker that holds a request past the budget, without hurting its other requests.

Neither server does this for threaded workers: gunicorn's gthread `timeout` is a heartbeat,
and uWSGI's harakiri timer is per worker and cleared by any thread that finishes a request.
So each worker process runs one watchdog thread. When a request has run REQUEST_TIMEOUT
seconds, the watchdog asks its own server to retire this worker gracefully: it takes no new
requests and finishes the others it holds. Once only overdue requests are left, and nginx has
given up on them (its read timeout is REQUEST_TIMEOUT + 5 s, so the client got a 504), the
worker exits and the master starts a fresh one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

log = logging.getLogger("stack.watchdog")

# nginx's read timeout is this much longer than REQUEST_TIMEOUT (nginx/render.sh).
NGINX_READ_MARGIN_S = 5
# gunicorn's worker stops gracefully on SIGTERM; a uWSGI worker does on SIGHUP (its SIGTERM
# would end it at once, with every request it holds).
GRACEFUL_STOP = {"gunicorn": signal.SIGTERM, "uwsgi": signal.SIGHUP}

_started: dict[int, tuple[float, str]] = {}  # thread id -> (monotonic start, request path)
_lock = threading.Lock()
_watching_pid: int | None = None


def _watch(budget: float, stop_signal: signal.Signals) -> None:
    retiring = False
    while True:
        time.sleep(0.5)
        now = time.monotonic()
        with _lock:
            running = [(now - started, path) for started, path in _started.values()]
        overdue = [(age, path) for age, path in running if age > budget]
        if not retiring:
            if overdue:
                age, path = max(overdue)
                log.error(
                    "request %s has run %.0fs, past REQUEST_TIMEOUT=%ss: retiring worker %s gracefully",
                    path,
                    age,
                    settings.REQUEST_TIMEOUT,
                    os.getpid(),
                )
                os.kill(os.getpid(), stop_signal)
                retiring = True
            continue
        # The other requests finish first; the overdue ones only once nginx has answered them.
        if len(overdue) == len(running) and all(age > budget + NGINX_READ_MARGIN_S + 1 for age, _ in running):
            log.error(
                "worker %s exits with %d overdue request(s); its master starts a fresh one", os.getpid(), len(running)
            )
            logging.shutdown()
            os._exit(0)


def _ensure_watchdog(server: str) -> None:
    """One watchdog per worker process, started by its first request (after any fork)."""
    global _watching_pid
    if _watching_pid == os.getpid() or server not in GRACEFUL_STOP:
        return
    with _lock:
        if _watching_pid == os.getpid():
            return
        _watching_pid = os.getpid()
        _started.clear()
    threading.Thread(
        target=_watch, args=(float(settings.REQUEST_TIMEOUT), GRACEFUL_STOP[server]), daemon=True, name="watchdog"
    ).start()


class RequestBudgetMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if settings.REQUEST_TIMEOUT is None:  # not under an app server (tests, manage.py)
            return self.get_response(request)
        from stack.middleware import app_server_name

        _ensure_watchdog(app_server_name(request.META))
        key = threading.get_ident()
        with _lock:
            _started[key] = (time.monotonic(), request.path)
        try:
            return self.get_response(request)
        finally:
            with _lock:
                _started.pop(key, None)
