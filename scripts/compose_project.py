"""The compose stack under a project name and port of its own, next to any stack already running.

`make bench-images` (scripts/bench_images.py) times `up` with it; the tests' ComposeStack
(tests/compose_stack.py) builds on it. Scripts never import from tests/, tests may import from here.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import local_tls

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("gunicorn", "uwsgi")
SECRET_FILE = ROOT / ".secrets" / "django_secret_key"
PG_PASSWORD_FILE = ROOT / ".secrets" / "postgres_password"
BOTH_PROFILES = ("--profile", "gunicorn", "--profile", "uwsgi")
EVERY_PROFILE = (*BOTH_PROFILES, "--profile", "postgres", "--profile", "loadtest", "--profile", "monitoring")


# Ports handed out by this process, so two calls in a row never give the same one.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1, below the kernel's ephemeral range: one bind(0) hands out is in that
    range, where an outgoing connection can take it before its server binds (CI saw uWSGI's bind fail)."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    first_ephemeral = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    for _ in range(500):
        port = secrets.randbelow(first_ephemeral - 10000) + 10000
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port on 127.0.0.1 from 10000 to {first_ephemeral - 1} in 500 tries")


def ensure_secret_file() -> None:
    """What `make up` does on first use: the compose secrets and the local certificate (in
    .secrets/tls, which .env's TLS_DIR names) must exist before `up`."""
    for path, size in ((SECRET_FILE, 50), (PG_PASSWORD_FILE, 32)):
        if not path.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            path.write_text(secrets.token_urlsafe(size) + "\n")
            path.chmod(0o644)
    if local_tls.main([]) != 0:
        raise RuntimeError("scripts/local_tls.py could not make the local certificate")


def free_udp_port_too() -> int:
    """A port free for TCP and for UDP, as HTTPS_PORT must be (HTTP/3 uses the same number)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both TCP and UDP in 50 tries")


@dataclass
class ComposeProject:
    server: str
    project: str
    port: int
    # The HTTPS port, TCP and UDP; 0: a free one is picked.
    https_port: int = 0
    # Settings a test changes, as a user would in the shell (APP_THREADS=10 make up).
    overrides: dict[str, str] = field(default_factory=dict)

    # Prometheus' published port (MONITORING=1); 0: a free one is picked.
    prometheus_port: int = 0

    def __post_init__(self) -> None:
        if not self.https_port:
            self.https_port = free_udp_port_too()
        if not self.prometheus_port:
            self.prometheus_port = free_port()

    def env(self, server: str | None = None) -> dict[str, str]:
        # .env derives the profiles from APP_SERVER and DATABASE, as it would for a user's shell;
        # the stack under test uses its own defaults, whatever this process's environment holds,
        # unless the test overrides them.
        inherited = (
            "COMPOSE_PROFILES",
            "DATABASE",
            "DATABASE_URL",
            "DB_CONNECTIONS",
            "ALLOWED_HOSTS",
            "MAX_BODY_MB",
            "MONITORING",
            "APP_TRANSPORT",
        )
        env = {
            **{key: value for key, value in os.environ.items() if key not in inherited},
            **self.overrides,
            "APP_SERVER": server or self.server,
            "HTTP_PORT": str(self.port),
            "HTTPS_PORT": str(self.https_port),
            "PROMETHEUS_PORT": str(self.prometheus_port),
            "COMPOSE_PROJECT_NAME": self.project,
        }
        return env

    def compose(
        self, *args: str, server: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["docker", "compose", *args],
            cwd=ROOT,
            env=self.env(server),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"docker compose {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def up(self, *args: str, server: str | None = None) -> float:
        """Start (or update) the stack and wait until every container is healthy; return seconds."""
        started = time.monotonic()
        self.compose("up", "--detach", "--wait", "--wait-timeout", "180", *args, server=server)
        return time.monotonic() - started

    def down(self, *args: str) -> None:
        self.compose(*EVERY_PROFILE, "down", "--remove-orphans", *args, timeout=180)


def project_name(server: str, prefix: str) -> str:
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
    return f"{prefix}-{server}-{secrets.token_hex(3)}"
