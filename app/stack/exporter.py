"""`python -m stack.exporter gunicorn|uwsgi`: the app container's metrics, over HTTP on METRICS_BIND.

The one exporter of the stack's own. It adds up what every worker recorded (stack/metrics.py) and
what the server itself knows, under the same names for both servers, and serves it on any path.
gunicorn's master starts it (its when_ready hook), and uWSGI's supervisor beside the uWSGI master
(uwsgi/supervise.py), so it runs wherever the server runs and ends with it.

Why a process of its own and not a /metrics view in the app: a view is answered by a worker
thread, and under load it waits behind the very requests it should count. Measured with a /metrics
view under three times the slots of half-second requests: the scrape waited in the worker's queue,
and of 24 requests in flight it saw at most 10 at once. This process answers at once.

What is read here, and why here:
- appserver_workers and appserver_threads: gunicorn's workers are the master's other children
  (read from /proc); uWSGI's stats server lists its workers (uwsgi/metrics.ini).
- appserver_worker_restarts_total under uWSGI: its master's respawn_count.
- appserver_queued_requests{where="backlog"}: the kernel's accept queue of the app's listening
  socket or port (stack/listen_queue.py, which uwsgi/supervise.py drains too; uWSGI's stats server
  reports the same figure as listen_queue, gunicorn none). Under gevent and under
  uWSGI this is where requests wait.

The containers' CPU and memory, this one's too, come from cgroup-exporter/, which sees them all.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from stack import listen_queue
from stack.server_env import listen_addresses

UWSGI_STATS_SOCKET = "uwsgi-stats.sock"  # in PROMETHEUS_MULTIPROC_DIR (uwsgi/metrics.ini)
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PROCESS_NAME = b"stack-exporter"


class StackCollector:
    def __init__(self, server: str, master: int) -> None:
        self.server = server
        self.master = master
        self.directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        self.addresses = listen_addresses(server)
        workers_model = os.environ["APP_WORKER_MODEL"]
        self.slots_per_worker = int(os.environ["APP_GREENLETS" if workers_model == "gevent" else "APP_THREADS"])

    def collect(self) -> Iterator[Metric]:
        """Every figure labelled with the server, so one query shows a swap's two servers apart."""
        for family in self._collect():
            family.samples = [
                sample._replace(labels={**sample.labels, "server": self.server}) for sample in family.samples
            ]
            yield family

    def _collect(self) -> Iterator[Metric]:
        for pid in _dead_pids(self.directory):
            mark_process_dead(pid, str(self.directory))
        uwsgi = _uwsgi_stats(self.directory / UWSGI_STATS_SOCKET) if self.server == "uwsgi" else None
        queued = GaugeMetricFamily("appserver_queued_requests", "Requests waiting for a thread", labels=["where"])
        queued.add_metric(["backlog"], sum(listen_queue.queued_at(address) for address in self.addresses))
        for family in MultiProcessCollector(None, str(self.directory)).collect():
            if family.name == "appserver_queued_requests":
                queued.samples.extend(family.samples)
            elif family.name != "appserver_worker_restarts" or uwsgi is None:
                yield family
        yield queued
        if uwsgi is not None:
            running = [worker for worker in uwsgi.get("workers", []) if worker.get("pid", 0) > 0]
            workers = len(running)
            # respawn_count starts at 1 with the worker's first spawn.
            respawns = sum(max(worker.get("respawn_count", 1) - 1, 0) for worker in uwsgi.get("workers", []))
            yield CounterMetricFamily("appserver_worker_restarts", "Worker processes that exited", value=respawns)
        else:
            workers = len(_children(self.master) - {os.getpid()})
        yield GaugeMetricFamily("appserver_workers", "Worker processes running", value=workers)
        yield GaugeMetricFamily(
            "appserver_threads",
            "Requests the running workers can handle at once",
            value=workers * self.slots_per_worker,
        )


def _dead_pids(directory: Path) -> set[int]:
    """Processes that left live gauges behind (a killed worker): their files are dropped."""
    pids = set()
    for path in directory.glob("*_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if not Path(f"/proc/{pid}").exists():
            pids.add(pid)
    return pids


def _children(parent: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command's closing parenthesis: the state, then the parent's pid.
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue  # a process that has just exited
        if int(ppid) == parent and state != "Z":
            children.add(int(stat.parent.name))
    return children


def _uwsgi_stats(path: Path) -> dict[str, Any] | None:
    """uWSGI's stats server: one JSON document per connection."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(2)
            client.connect(str(path))
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
        return json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return None  # between two masters (a reload), or not up yet: no figures this time


def start(server: str) -> subprocess.Popen[bytes]:
    """Run this module beside the server: gunicorn's master and uWSGI's supervise.py call this."""
    return subprocess.Popen([sys.executable, "-m", "stack.exporter", server], cwd=Path(__file__).parent.parent)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("gunicorn", "uwsgi"):
        print("usage: python -m stack.exporter gunicorn|uwsgi", file=sys.stderr)
        return 2
    master = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    # Ends with the server that started it, even when that one is killed outright.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    # Named apart from the workers in ps, top and /proc (make bench counts the workers' CPU).
    libc.prctl(PR_SET_NAME, PROCESS_NAME)
    if os.getppid() != master:
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, _, port = os.environ["METRICS_BIND"].rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StackCollector(argv[1], master))
    start_http_server(int(port), host or "0.0.0.0", registry)
    while os.getppid() == master:
        time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
