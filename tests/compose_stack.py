"""Drive the real docker compose stack from tests: one project name and port per stack."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

import requests

# The project itself (name, port, env, up, down) is scripts/compose_project.py's, which
# `make bench-images` uses too. ensure_secret_file is imported from here by the tests.
from compose_project import BOTH_PROFILES, EVERY_PROFILE, ComposeProject, project_name
from compose_project import ensure_secret_file as ensure_secret_file
from harness import HOST, ROOT, free_port, handed_over, read_dotenv, unix_connections, wait_until

# The CA scripts/local_tls.py keeps for `make up` (ensure_secret_file makes it).
LOCAL_CA = str(ROOT / ".secrets" / "ca" / "ca.pem")


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
class ComposeStack(ComposeProject):
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
        """GET over HTTPS, nginx's front door, trusting the local CA that `make up` made."""
        return requests.get(
            f"https://127.0.0.1:{self.https_port}{path}", headers={"Host": HOST}, timeout=timeout, verify=LOCAL_CA
        )

    def post_json(self, path: str, body: dict, timeout: float = 30) -> requests.Response:
        """POST JSON over HTTPS, as get() does."""
        return requests.post(
            f"https://127.0.0.1:{self.https_port}{path}",
            json=body,
            headers={"Host": HOST},
            timeout=timeout,
            verify=LOCAL_CA,
        )

    def wait_until_handed_over(self, count: int, timeout: float = 30) -> None:
        """Wait until `count` requests sent to nginx are in the app server's hands, judged from
        nginx's own kernel tables (harness.handed_over): nginx listens on 8443 for HTTPS, and
        reaches the app servers over their sockets (APP_TRANSPORT=unix) or port 8000 (tcp)."""

        def check() -> bool:
            tables = self.compose("exec", "-T", "nginx", "cat", "/proc/net/tcp", "/proc/net/unix", check=False).stdout
            tcp, _, unix = tables.partition("Num ")
            if not tcp or not unix:
                return False
            if self.overrides.get("APP_TRANSPORT", read_dotenv()["APP_TRANSPORT"]) == "tcp":
                return handed_over(tcp, 8443, 8000, count)
            return handed_over(tcp, 8443, 8000, count, unix_connections("Num " + unix, "/run/app-sockets"))

        wait_until(check, timeout, f"{count} requests to reach {self.server} through nginx")

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
    return ComposeStack(server=server, project=project_name(server, "wsgie2e"), port=free_port())
