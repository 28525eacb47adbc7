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

from stack.server_env import load  # (needs the app on sys.path first)

PASSED_ON = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
POLL_S = 0.05


def log(message: str) -> None:
    print(f"supervise: {message}", file=sys.stderr, flush=True)


def listen_port(bind: str) -> int | None:
    """The TCP port of APP_BIND (host:port), or None for a Unix socket path."""
    host, colon, port = bind.rpartition(":")
    return int(port) if colon and host and port.isdigit() else None


def queued(port: int, tables: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6")) -> int:
    """Connections waiting to be accepted on `port`: rx_queue of a listening socket is its
    accept queue (tcp4_seq_show / tcp6_seq_show in the kernel)."""
    waiting = 0
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:  # no IPv6 in this network namespace
            continue
        for line in lines:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if state == LISTEN and int(local.rpartition(":")[2], 16) == port:
                waiting += int(queues.partition(":")[2], 16)
    return waiting


def drain(child: subprocess.Popen[bytes], port: int | None, budget: float) -> None:
    """Serve the listen queue empty, then stop gracefully; cut off at `budget` seconds."""
    started = time.monotonic()
    deadline = started + budget
    if port is not None:
        waiting = queued(port)
        log(f"SIGTERM with {waiting} connection(s) in the listen queue; serving them before the graceful stop")
        while waiting and child.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
            waiting = queued(port)
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
    exporter = start_exporter() if settings.metrics_bind else None
    signal.signal(signal.SIGTERM, request_stop)
    for passed in PASSED_ON:
        signal.signal(passed, pass_on)
    while child.poll() is None and not stop_requested:
        time.sleep(POLL_S * 2)
    if stop_requested:
        drain(child, listen_port(settings.bind), settings.graceful_timeout)
    code = child.wait()
    if exporter is not None:
        exporter.terminate()
        try:
            exporter.wait(5)
        except subprocess.TimeoutExpired:
            exporter.kill()
    return 128 - code if code < 0 else code


def start_exporter() -> subprocess.Popen[bytes]:
    app = Path(__file__).resolve().parent.parent / "app"
    return subprocess.Popen([sys.executable, "-m", "stack.exporter", "uwsgi"], cwd=app)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
