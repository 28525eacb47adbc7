"""Connections the kernel has completed on a listening TCP port that no worker has accepted yet.

uwsgi/supervise.py waits for this queue to empty before uWSGI's graceful stop; stack/exporter.py
reports it as appserver_queued_requests{where="backlog"}.
"""

from __future__ import annotations

from pathlib import Path

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


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
