"""Run uWSGI and stop it without dropping a request nginx has handed to it.

uWSGI accepts a connection only when one of its threads is free; the rest wait in the
kernel's listen queue. Its graceful stop (SIGTERM, mapped to gracefully_kill_them_all in
uwsgi.ini) lets running requests finish but closes the socket on the queued ones, which nginx
then answers with 503 (unbit/uwsgi#2693, open). gunicorn's gthread worker accepts at once and
queues inside the worker, so it has no such gap.

So this process sits between Docker (or the test harness) and the uWSGI master. On SIGTERM it
lets uWSGI go on serving until its listen queue is empty, then passes SIGTERM on, and cuts
uWSGI off (SIGINT) if the whole stop outlasts GRACEFUL_TIMEOUT, gunicorn's own bound. Every
other signal is passed on as it came. Usage: python supervise.py uwsgi --ini uwsgi.ini
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))

from stack import exporter as exporter_process  # (needs the app on sys.path first)
from stack.listen_queue import queued_at
from stack.server_env import load

PASSED_ON = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
POLL_S = 0.05


def log(message: str) -> None:
    print(f"supervise: {message}", file=sys.stderr, flush=True)


def drain(child: subprocess.Popen[bytes], bind: str, budget: float) -> None:
    """Serve the listen queue empty, then stop gracefully; cut off at `budget` seconds."""
    started = time.monotonic()
    deadline = started + budget
    waiting = queued_at(bind)
    log(f"SIGTERM with {waiting} connection(s) in the listen queue; serving them before the graceful stop")
    while waiting and child.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL_S)
        waiting = queued_at(bind)
    log(f"listen queue {'empty' if not waiting else f'still {waiting} at the deadline'} after "
        f"{time.monotonic() - started:.1f}s; stopping uWSGI gracefully")  # fmt: skip
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        log(f"uWSGI still running {budget:.0f}s (GRACEFUL_TIMEOUT) after SIGTERM; stopping it at once")
        child.send_signal(signal.SIGINT)
        child.wait()


def main(argv: list[str]) -> int:
    if not argv:
        log("usage: supervise.py uwsgi --ini uwsgi.ini")
        return 2
    settings = load()
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    def pass_on(signum: int, frame: object) -> None:
        child.send_signal(signum)

    child = subprocess.Popen(argv)
    # METRICS_BIND set: the metrics exporter (app/stack/exporter.py) runs beside uWSGI, not under it.
    # As uWSGI's attach-daemon, a request nginx sent while one of two replicas was scaled away got a
    # 503 (2 runs of 2, test_e2e_compose.py); beside it, none.
    exporter = exporter_process.start("uwsgi") if settings.metrics_bind else None
    signal.signal(signal.SIGTERM, request_stop)
    for passed in PASSED_ON:
        signal.signal(passed, pass_on)
    while child.poll() is None and not stop_requested:
        time.sleep(POLL_S * 2)
    if stop_requested:
        drain(child, settings.bind, settings.graceful_timeout)
    code = child.wait()
    if exporter is not None:
        exporter.terminate()
        try:
            exporter.wait(5)
        except subprocess.TimeoutExpired:
            exporter.kill()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
