"""Connections the kernel has completed on a listening socket that no worker has accepted yet.

uwsgi/supervise.py waits for this queue to empty before uWSGI's graceful stop; stack/exporter.py
reports it as appserver_queued_requests{where="backlog"}. A TCP port's queue is in /proc/net/tcp;
a Unix socket's only in the kernel's socket diagnostics (what `ss -xl` shows as Recv-Q).
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
TCP_LISTEN = 10
# linux/sock_diag.h, linux/unix_diag.h, linux/netlink.h
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
UDIAG_SHOW_NAME, UDIAG_SHOW_RQLEN = 0x01, 0x10
UNIX_DIAG_NAME, UNIX_DIAG_RQLEN = 0, 4
NLM_F_REQUEST, NLM_F_DUMP = 0x01, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3


def listen_port(bind: str) -> int | None:
    """The TCP port of a bind address (host:port), or None for a Unix socket path."""
    host, colon, port = bind.rpartition(":")
    return int(port) if colon and host and port.isdigit() else None


def queued_at(bind: str) -> int:
    """Connections waiting to be accepted where the app server listens: a socket path or host:port."""
    port = listen_port(bind)
    return queued(port) if port is not None else unix_queued(bind)


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


def unix_queued(path: str) -> int:
    """Connections waiting to be accepted on the listening Unix socket bound to `path`: a dump of
    this network namespace's listening Unix sockets over NETLINK_SOCK_DIAG (no privilege needed),
    whose UNIX_DIAG_RQLEN is the accept queue of a listening one (unix_diag_get_rqlen)."""
    # struct unix_diag_req: family, protocol, pad, states, inode, show, cookie[2]
    show = UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN
    request = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 1 << TCP_LISTEN, 0, show, 0, 0)
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    wanted = path.encode()
    waiting = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.sendall(header + request)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == NLMSG_DONE:
                    return waiting
                if kind == NLMSG_ERROR:
                    error = -struct.unpack_from("=i", data, offset + 16)[0]
                    raise OSError(error, "the sock_diag dump of Unix sockets failed")
                name, queue = _unix_attributes(data[offset + 16 + 16 : offset + length])
                if name == wanted:
                    waiting += queue
                offset += (length + 3) & ~3


def _unix_attributes(attributes: bytes) -> tuple[bytes, int]:
    """UNIX_DIAG_NAME and the receive queue of UNIX_DIAG_RQLEN, from a unix_diag_msg's attributes."""
    name, queue, offset = b"", 0, 0
    while offset + 4 <= len(attributes):
        length, kind = struct.unpack_from("=HH", attributes, offset)
        value = attributes[offset + 4 : offset + length]
        if kind == UNIX_DIAG_NAME:
            name = value.rstrip(b"\0")
        elif kind == UNIX_DIAG_RQLEN:
            queue = struct.unpack_from("=I", value)[0]
        offset += (length + 3) & ~3
    return name, queue
