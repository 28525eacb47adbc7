"""stack/listen_queue.py on real kernel sockets: the connections waiting to be accepted, which
uwsgi/supervise.py serves before a graceful stop and the metrics report, on TCP and Unix sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from stack.listen_queue import queued_at


def connect_unaccepted(family: int, address: str | tuple[str, int], count: int) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        client = socket.socket(family)
        client.connect(address)
        clients.append(client)
    return clients


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_queued_counts_connections_not_yet_accepted_on_this_listener_only(family, tmp_path: Path):
    if family == "unix":
        listener, other = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
        address: str | tuple[str, int] = str(tmp_path / "app.sock")
        listener.bind(address)
        other.bind(str(tmp_path / "other.sock"))
        bind, kind = str(address), socket.AF_UNIX
    else:
        listener, other = socket.socket(), socket.socket()
        listener.bind(("127.0.0.1", 0))
        other.bind(("127.0.0.1", 0))
        address = listener.getsockname()
        bind, kind = f"127.0.0.1:{address[1]}", socket.AF_INET
    with listener, other:
        listener.listen(16)
        other.listen(16)
        assert queued_at(bind) == 0
        clients = connect_unaccepted(kind, address, 5)
        other_clients = connect_unaccepted(kind, other.getsockname(), 2)
        assert queued_at(bind) == 5
        accepted, _ = listener.accept()
        assert queued_at(bind) == 4
        for sock in [accepted, *clients, *other_clients]:
            sock.close()
