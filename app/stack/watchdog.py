"""Recycle a worker that holds a request past the budget, without hurting its other requests.

Neither server does this for threaded workers: gunicorn's gthread `timeout` is a heartbeat,
and uWSGI's harakiri timer is per worker and cleared by any thread that finishes a request.
So each worker process runs one watchdog thread. When a request has run REQUEST_TIMEOUT
seconds, the watchdog asks its own server to retire this worker gracefully: it takes no new
requests and finishes the others it holds. Once only overdue requests are left, and nginx has
given up on them (its read timeout is REQUEST_TIMEOUT + 5 s, so the client got a 504), the
worker exits and the master starts a fresh one.

Under gevent (APP_WORKER_MODEL=gevent) the standard library is patched, so a threading.Thread
would be a greenlet, and a greenlet that never yields (a CPU loop) would never let it run. So the
watchdog is always a real OS thread, with a real lock and sleep (gevent.monkey.get_original). It
also watches the event loop: a greenlet beats every BEAT_S, and if an overdue request coincides
with a loop that has not run for STALLED_S, nothing else on this worker can finish, so the worker
exits at once instead of waiting for its other requests.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sys
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

# Under gevent: how often the event loop's heartbeat greenlet runs, and how long without a beat
# means a greenlet is holding the loop (a beat late by a second is only a busy loop).
BEAT_S = 0.5
STALLED_S = 5.0


def _gevent_patched() -> bool:
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return monkey.is_module_patched("threading")


def _native(module: str, name: str, plain: object) -> object:
    """The standard library's own function even where gevent patched it: real threads, locks, sleep."""
    if not _gevent_patched():
        return plain
    from gevent import monkey

    return monkey.get_original(module, name)


_started: dict[int, tuple[float, str]] = {}  # thread or greenlet id -> (monotonic start, request path)
_lock = _native("_thread", "allocate_lock", _thread.allocate_lock)()
_watching_pid: int | None = None
_last_beat = time.monotonic()


def _beat() -> None:
    """Under gevent: a greenlet that records when the event loop last ran."""
    import gevent

    global _last_beat
    while True:
        _last_beat = time.monotonic()
        gevent.sleep(BEAT_S)


def _watch(budget: float, stop_signal: signal.Signals, gevent_loop: bool) -> None:
    sleep = _native("time", "sleep", time.sleep)
    retiring = False
    while True:
        sleep(0.5)
        now = time.monotonic()
        with _lock:
            running = [(now - started, path) for started, path in _started.values()]
        overdue = [(age, path) for age, path in running if age > budget]
        stalled = now - _last_beat if gevent_loop else 0.0
        if overdue and stalled > STALLED_S:
            age, path = max(overdue)
            log.error(
                "request %s has run %.0fs, past REQUEST_TIMEOUT=%ss, and has held worker %s's event loop "
                "for %.0fs: no other request here can finish, so the worker exits now",
                path,
                age,
                settings.REQUEST_TIMEOUT,
                os.getpid(),
                stalled,
            )
            logging.shutdown()
            os._exit(1)
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
    gevent_loop = _gevent_patched()
    if gevent_loop:
        import gevent

        gevent.spawn(_beat)
    start_thread = _native("_thread", "start_new_thread", _thread.start_new_thread)
    start_thread(_watch, (float(settings.REQUEST_TIMEOUT), GRACEFUL_STOP[server], gevent_loop))


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
