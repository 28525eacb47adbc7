"""Swap the running compose stack's app server without dropping a request: `make swap TO=uwsgi`.

1. start the target server next to the active one and wait until it is healthy (bounded);
2. re-render nginx's config for the target inside the running nginx and reload it: the old
   workers finish their requests, the new ones send everything to the target;
3. wait until nginx answers from the target, then stop the old server with SIGTERM, which
   drains its in-flight requests (gunicorn natively, uWSGI through uwsgi.ini's hook).

If the target never becomes healthy, it is removed and the old server goes on serving. A
swap started while another one runs is refused.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("gunicorn", "uwsgi")
PROFILES = ("--profile", "gunicorn", "--profile", "uwsgi")
# The rendered config and the active server live in nginx's tmpfs (nginx/render.sh).
NGINX_RUN_DIR = "/tmp/nginx"


class SwapError(RuntimeError):
    pass


def step(message: str) -> None:
    print(f"swap: {message}", flush=True)


def record_event(event: str, target: str, path: str | Path | None = None) -> None:
    """Append a phase (start, cutover, done) to $SWAP_EVENTS_FILE, where loadtest/run.py reads it."""
    path = path or os.environ.get("SWAP_EVENTS_FILE")
    if path:
        with Path(path).open("a") as file:
            file.write(json.dumps({"event": event, "to": target, "time": time.time()}) + "\n")


def compose(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["docker", "compose", *PROFILES, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise SwapError(f"docker compose {' '.join(args)} failed:\n{done.stderr.strip()[-2000:]}")
    return done


def active_server() -> str:
    done = compose("exec", "-T", "nginx", "cat", f"{NGINX_RUN_DIR}/app-server", check=False)
    if done.returncode != 0:
        raise SwapError("nginx is not running: start the stack with `make up` first")
    return done.stdout.strip()


def answering_server(port: str) -> str | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/readyz", headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.headers.get("X-App-Server")
    except (urllib.error.URLError, OSError):
        return None


@contextmanager
def only_one_swap() -> Iterator[None]:
    project = os.environ.get("COMPOSE_PROJECT_NAME", ROOT.name)
    lock_path = Path("/tmp") / f"wsgi-stack-swap-{project}.lock"
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SwapError(f"another swap of {project} is running; try again when it has finished") from None
        yield


def swap(target: str, port: str, timeout: float) -> str:
    with only_one_swap():
        current = active_server()
        if current == target:
            step(f"{target} is already active; nothing to do")
            return target
        step(f"active: {current}; starting {target} next to it")
        record_event("start", target)
        started = compose(
            "up", "--detach", "--no-deps", "--wait", "--wait-timeout", str(int(timeout)), target,
            timeout=timeout + 60, check=False,
        )  # fmt: skip
        if started.returncode != 0:
            logs = compose("logs", "--tail", "20", target, check=False).stdout
            compose("rm", "--stop", "--force", target, check=False)
            raise SwapError(
                f"{target} did not become healthy within {timeout:.0f}s; it was removed and {current} "
                f"goes on serving.\n{target}'s last log lines:\n{logs}"
            )
        step(f"{target} is healthy; pointing nginx at it and reloading gracefully")
        record_event("cutover", target)
        compose(
            "exec", "-T", "-e", f"APP_SERVER={target}", "-e", f"APP_SERVER_ADDR={target}:8000",
            "nginx", "/etc/nginx/stack/reload.sh",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while answering_server(port) != target:
            if time.monotonic() > deadline:
                raise SwapError(f"nginx still does not answer from {target} 30s after the reload")
            time.sleep(0.2)
        step(f"nginx answers from {target}; draining and stopping {current}")
        compose("stop", current, timeout=120)
        compose("rm", "--force", current)
        record_event("done", target)
        step(f"done: {target} is active")
        return target


def main(argv: list[str]) -> int:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("to", help=f"one of: {', '.join(SERVERS)}")
    parse.add_argument("--timeout", type=float, default=120, help="seconds the target may take to be healthy")
    args = parse.parse_args(argv)
    if args.to not in SERVERS:
        print(f"swap: TO must be one of: {', '.join(SERVERS)} (got {args.to!r})", file=sys.stderr)
        return 2
    try:
        swap(args.to, os.environ.get("HTTP_PORT", "8080"), args.timeout)
    except SwapError as error:
        print(f"swap: aborted: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
