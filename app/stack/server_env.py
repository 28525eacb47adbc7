"""The app-server settings that gunicorn and uWSGI share, read and checked in one place.

Their values live in the top-level .env (docker compose reads it, and so do the
Makefile and the tests), so none has a second default here: a missing one stops the
server. gunicorn.conf.py imports this module, and both entrypoints run it before they exec
the server (which also empties the metrics directory, stack.metrics). Both servers refuse
the same bad input with the same message.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from stack.env import env_choice, env_int, env_str

# threads: a thread per request in flight; gevent: a greenlet per connection.
WORKER_MODELS = ("threads", "gevent")
# unix: a socket file per replica in a directory nginx shares (same host); tcp: APP_BIND.
TRANSPORTS = ("unix", "tcp")


@dataclass(frozen=True)
class ServerEnv:
    # Where the server listens for nginx: a socket path (APP_TRANSPORT=unix) or host:port (tcp),
    # as uWSGI's socket option takes it. gunicorn's workers each take a path beside it
    # (listen_addresses).
    bind: str
    workers: int
    threads: int
    worker_model: str
    greenlets: int
    request_timeout: int
    graceful_timeout: int
    max_requests: int
    max_requests_jitter: int
    # Empty: no metrics. Set: the metrics exporter serves Prometheus here (stack/exporter.py).
    metrics_bind: str


def load() -> ServerEnv:
    request_timeout = env_int("REQUEST_TIMEOUT", None, 1, 3600)
    graceful_timeout = env_int("GRACEFUL_TIMEOUT", None, 1, 3600)
    return ServerEnv(
        bind=listen_address(),
        workers=env_int("APP_WORKERS", None, 1, 256),
        threads=env_int("APP_THREADS", None, 1, 256),
        worker_model=env_choice("APP_WORKER_MODEL", None, WORKER_MODELS),
        greenlets=env_int("APP_GREENLETS", None, 2, 100_000),
        request_timeout=request_timeout,
        graceful_timeout=graceful_timeout,
        max_requests=env_int("MAX_REQUESTS", None, 0, 10_000_000),
        max_requests_jitter=env_int("MAX_REQUESTS_JITTER", None, 0, 10_000_000),
        metrics_bind=_metrics_bind(),
    )


def listen_address() -> str:
    """APP_TRANSPORT=unix: APP_SOCKET_DIR/<hostname>.sock, one per replica (a container's hostname
    is its id), which nginx finds in the directory they share; tcp: APP_BIND."""
    if env_choice("APP_TRANSPORT", None, TRANSPORTS) == "tcp":
        return env_str("APP_BIND", None)
    directory = env_str("APP_SOCKET_DIR", None)
    if not directory.startswith("/"):
        raise ImproperlyConfigured(f"APP_SOCKET_DIR must be an absolute path, got {directory!r}")
    return f"{directory.rstrip('/')}/{socket.gethostname()}.sock"


def listen_addresses(server: str) -> list[str]:
    """Every address `server` takes nginx's requests on. Over a Unix socket, each gunicorn worker
    has one of its own, <hostname>.w<slot>.sock, so nginx balances per request between them
    (gunicorn.conf.py says why); uWSGI's workers share <hostname>.sock. Over TCP, APP_BIND."""
    address = listen_address()
    if server != "gunicorn" or not address.startswith("/"):
        return [address]
    workers = env_int("APP_WORKERS", None, 1, 256)
    return [f"{address.removesuffix('.sock')}.w{slot}.sock" for slot in range(workers)]


def _metrics_bind() -> str:
    bind = os.environ.get("METRICS_BIND", "")
    if not bind:
        return ""
    _host, colon, port = bind.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(f"METRICS_BIND must be [host]:port, like :9200, got {bind!r}")
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise ImproperlyConfigured(
            "PROMETHEUS_MULTIPROC_DIR (a directory for every worker's metrics files) is required with METRICS_BIND"
        )
    return bind


def main() -> int:
    """Check the settings, prepare the metrics directory and the socket's, and print the address
    to listen on (the uWSGI entrypoint passes it on as APP_LISTEN)."""
    try:
        settings = load()
    except ImproperlyConfigured as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    from stack import metrics

    metrics.prepare_dir()
    if settings.bind.startswith("/"):
        directory = Path(settings.bind).parent
        try:
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as error:
            print(f"configuration error: APP_SOCKET_DIR {directory} cannot be made: {error.strerror}", file=sys.stderr)
            return 2
    print(settings.bind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
