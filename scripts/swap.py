"""Swap the running compose stack's app server without dropping a request: `make swap TO=uwsgi`.

1. start the target server next to the active one and wait until it is healthy (bounded);
2. re-render nginx's config for the target inside the running nginx and reload it: the old
   workers finish their requests, the new ones send everything to the target;
3. once nginx's old workers are gone (nothing can reach the old server any more) and nginx
   answers from the target, stop the old server with SIGTERM, which drains what it still holds.

If the target never becomes healthy, it is removed and the old server goes on serving. If
nginx's old workers still hold requests after NGINX_OLD_WORKERS_WAIT seconds (nginx/reload.sh),
the old server is left running, undrained, and the swap says so: `make swap TO=<target>` again
finishes it. A swap started while another one runs is refused.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import ssl
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


# nginx/reload.sh's exit code when nginx's old workers outlive its wait.
OLD_WORKERS_REMAIN = 3


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


# Which server answers on loopback, not who nginx is: the certificate names the public host (or
# comes from a local CA this process need not trust), so it is not checked here.
UNVERIFIED = ssl.create_default_context()
UNVERIFIED.check_hostname = False
UNVERIFIED.verify_mode = ssl.CERT_NONE


def answering_server(https_port: str) -> str | None:
    """The X-App-Server of nginx's answer to /readyz on the HTTPS port (plain HTTP redirects)."""
    request = urllib.request.Request(f"https://127.0.0.1:{https_port}/readyz", headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(request, timeout=2, context=UNVERIFIED) as response:
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
            finish_previous(target)
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
        point_nginx_at(target, current)
        deadline = time.monotonic() + 30
        while answering_server(port) != target:
            if time.monotonic() > deadline:
                raise SwapError(f"nginx still does not answer from {target} 30s after the reload")
            time.sleep(0.2)
        stop_old(current)
        record_event("done", target)
        step(f"done: {target} is active")
        return target


def point_nginx_at(target: str, old: str) -> None:
    """Re-render nginx for target and reload; returns once no nginx worker can reach old."""
    env = [f"APP_SERVER={target}", f"APP_SERVER_ADDR={target}:8000"]
    if "NGINX_OLD_WORKERS_WAIT" in os.environ:
        env.append(f"NGINX_OLD_WORKERS_WAIT={os.environ['NGINX_OLD_WORKERS_WAIT']}")
    done = compose(
        "exec", "-T", *(arg for pair in env for arg in ("-e", pair)), "nginx", "/etc/nginx/stack/reload.sh",
        check=False,
    )  # fmt: skip
    if done.returncode == OLD_WORKERS_REMAIN:
        raise SwapError(
            f"nginx sends every new request to {target}, but its old workers still hold requests to {old}, "
            f"so {old} was left running and was not drained. Once those requests are done, "
            f"`make swap TO={target}` again stops it.\n{done.stderr.strip()}"
        )
    if done.returncode != 0:
        raise SwapError(f"reloading nginx for {target} failed; nothing was stopped:\n{done.stderr.strip()[-2000:]}")


def stop_old(old: str) -> None:
    step(f"nginx has let go of {old}; draining and stopping it")
    compose("stop", old, timeout=120)
    compose("rm", "--force", old)


def finish_previous(target: str) -> None:
    """The target is active; stop the other server if an aborted swap left it running."""
    (other,) = (server for server in SERVERS if server != target)
    if not compose("ps", "--quiet", other, check=False).stdout.strip():
        step(f"{target} is already active; nothing to do")
        return
    step(f"{target} is active and {other} still runs (a swap did not finish); finishing it")
    point_nginx_at(target, other)
    stop_old(other)
    step(f"done: {target} is active")


def main(argv: list[str]) -> int:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("to", help=f"one of: {', '.join(SERVERS)}")
    parse.add_argument("--timeout", type=float, default=120, help="seconds the target may take to be healthy")
    args = parse.parse_args(argv)
    if args.to not in SERVERS:
        print(f"swap: TO must be one of: {', '.join(SERVERS)} (got {args.to!r})", file=sys.stderr)
        return 2
    try:
        swap(args.to, os.environ.get("HTTPS_PORT", "8443"), args.timeout)
    except SwapError as error:
        print(f"swap: aborted: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
