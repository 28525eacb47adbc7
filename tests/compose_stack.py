"""Drive the real docker compose stack from tests: one project name and port per stack."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field

import requests
from harness import HOST, ROOT, SERVERS, free_port

SECRET_FILE = ROOT / ".secrets" / "django_secret_key"
BOTH_PROFILES = ("--profile", "gunicorn", "--profile", "uwsgi")
EVERY_PROFILE = (*BOTH_PROFILES, "--profile", "loadtest")


def docker_available() -> str | None:
    """None when an engine and the compose plugin answer, else why not."""
    try:
        engine = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"docker did not answer: {error}"
    if engine.returncode != 0:
        return f"no Docker engine answers: {engine.stderr.strip()[-300:]}"
    if plugin.returncode != 0:
        return "the docker compose plugin is missing"
    return None


def ensure_secret_file() -> None:
    """What `make up` does on first use: the compose secret must exist before `up`."""
    if not SECRET_FILE.exists():
        SECRET_FILE.parent.mkdir(mode=0o700, exist_ok=True)
        SECRET_FILE.write_text(secrets.token_urlsafe(50) + "\n")
        SECRET_FILE.chmod(0o644)


def build_images() -> None:
    done = subprocess.run(
        ["docker", "compose", *EVERY_PROFILE, "build"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "COMPOSE_PROJECT_NAME": "wsgi-stack-build"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker compose build failed:\n{done.stderr[-6000:]}")


@dataclass
class ComposeStack:
    server: str
    project: str
    port: int
    # Settings a test changes, as a user would in the shell (APP_THREADS=10 make up).
    overrides: dict[str, str] = field(default_factory=dict)

    def env(self, server: str | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            **self.overrides,
            "APP_SERVER": server or self.server,
            "HTTP_PORT": str(self.port),
            "COMPOSE_PROJECT_NAME": self.project,
        }
        # .env derives the profile from APP_SERVER, as it would for a user's shell; and the
        # stack under test uses its own defaults, whatever this process's environment holds.
        for inherited in ("COMPOSE_PROFILES", "DATABASE_URL", "ALLOWED_HOSTS", "MAX_BODY_MB"):
            env.pop(inherited, None)
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

    def make(self, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
        """A Makefile target, aimed at this stack's project and port."""
        return subprocess.run(
            ["make", "--no-print-directory", *args],
            cwd=ROOT,
            env={**self.env(), **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def get(self, path: str, timeout: float = 10) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", headers={"Host": HOST}, timeout=timeout)

    def container_ids(self, service: str) -> list[str]:
        done = self.compose(*BOTH_PROFILES, "ps", "--quiet", service)
        return done.stdout.split()

    def inspect(self, container: str) -> dict:
        done = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True)
        return json.loads(done.stdout)[0]

    def leftovers(self) -> dict[str, list[str]]:
        """Every container, network and volume still labelled with this project."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, command in {
            "containers": ["docker", "ps", "--all", "--quiet", "--filter", label],
            "networks": ["docker", "network", "ls", "--quiet", "--filter", label],
            "volumes": ["docker", "volume", "ls", "--quiet", "--filter", label],
        }.items():
            found[kind] = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
        return found


def compose_stack(server: str) -> ComposeStack:
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
    return ComposeStack(server=server, project=f"wsgie2e-{server}-{secrets.token_hex(3)}", port=free_port())
