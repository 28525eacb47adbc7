"""Container healthcheck: ask the app server for /readyz wherever it listens (each gunicorn worker
has a socket of its own), in its own protocol.

gunicorn speaks HTTP, uWSGI the uwsgi protocol, so curl cannot ask both; this needs only
the standard library and starts in milliseconds. Exit 0 when ready, 1 otherwise.
Usage: python -m stack.healthcheck http|uwsgi
"""

from __future__ import annotations

import os
import socket
import struct
import sys

from django.core.exceptions import ImproperlyConfigured

from stack.server_env import listen_addresses

TIMEOUT_S = 3


def probe_host() -> str:
    # The first allowed host; Django answers 400 to any other, so "localhost" is not a given.
    first = os.environ.get("ALLOWED_HOSTS", "localhost").split(",")[0].strip()
    return first.lstrip(".") or "localhost"


def uwsgi_packet(variables: dict[str, str]) -> bytes:
    """A uwsgi request: a 4-byte header (modifier1, size, modifier2), then sized key/value pairs."""
    body = b"".join(
        struct.pack("<H", len(key)) + key + struct.pack("<H", len(value)) + value
        for key, value in ((k.encode(), v.encode()) for k, v in variables.items())
    )
    return struct.pack("<BHB", 0, len(body), 0) + body


def request_bytes(protocol: str, host: str, port: int, path: str) -> bytes:
    if protocol == "http":
        return f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    return uwsgi_packet(
        {
            "REQUEST_METHOD": "GET",
            "REQUEST_URI": path,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.0",
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "HTTP_HOST": host,
            "REMOTE_ADDR": "127.0.0.1",
        }
    )


def status_of(protocol: str, bind: str | int, path: str = "/readyz") -> int:
    """The HTTP status the app server answers with; both protocols answer in HTTP. `bind` is a
    socket path, or a port (or host:port) on this host."""
    host = probe_host()
    if isinstance(bind, str) and bind.startswith("/"):
        family, port, target = socket.AF_UNIX, 0, bind
    else:
        port = int(str(bind).rsplit(":", 1)[-1])
        family, target = socket.AF_INET, ("127.0.0.1", port)
    with socket.socket(family) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.connect(target)
        sock.sendall(request_bytes(protocol, host, port, path))
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("http", "uwsgi"):
        print("usage: python -m stack.healthcheck http|uwsgi", file=sys.stderr)
        return 2
    answered = 0
    try:
        for address in listen_addresses("gunicorn" if argv[1] == "http" else "uwsgi"):
            try:
                status = status_of(argv[1], address)
            except ConnectionRefusedError:
                continue  # a gunicorn worker restarting refuses on its socket until the next one starts
            if status != 200:
                print(f"healthcheck: /readyz answered {status} at {address}")
                return 1
            answered += 1
    except (OSError, ValueError, IndexError, ImproperlyConfigured) as error:
        print(f"healthcheck: {error}", file=sys.stderr)
        return 1
    if not answered:
        print("healthcheck: every socket refused a connection")
        return 1
    print(f"healthcheck: /readyz answered 200 on {answered} socket(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
