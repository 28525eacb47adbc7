"""nginx's own scripts (render, reload, the upstream follower) on the local-process harness."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
from harness import HOST, ROOT, LocalStack, local_stack, wait_until

RELOAD = str(ROOT / "nginx" / "reload.sh")


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    # /slow may sleep 5 s here, so a request outlives a short reload wait.
    running = local_stack("gunicorn", SLOW_MAX_MS="5000").start()
    try:
        yield running
    finally:
        running.stop()


def reload(stack: LocalStack, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RELOAD], env={**stack.env, **env}, capture_output=True, text=True, timeout=60)


def run_dir_state(stack: LocalStack) -> dict[str, str]:
    run_dir = Path(stack.env["NGINX_RUN_DIR"])
    return {name: (run_dir / name).read_text() for name in ("nginx.conf", "app-server", "upstream")}


def test_a_config_that_fails_nginx_t_leaves_the_running_config_untouched(stack):
    before = run_dir_state(stack)
    done = reload(stack, APP_SERVER="uwsgi", APP_SERVER_ADDR="no-such-host.invalid:8000")
    assert done.returncode != 0
    assert "failed nginx -t" in done.stderr and "nothing was changed" in done.stderr
    assert run_dir_state(stack) == before
    assert not list(Path(stack.env["NGINX_RUN_DIR"]).glob("nginx.conf.*")), "the candidate was left behind"
    answer = requests.get(stack.base_url + "/readyz", headers={"Host": HOST}, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["X-App-Server"] == "gunicorn"


def test_reload_fails_when_old_workers_outlive_its_wait(stack):
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.get, stack.base_url + "/slow?ms=5000", headers={"Host": HOST}, timeout=30)
        stack.wait_until_handed_over(1)  # inside an nginx worker, which the reload makes an old one
        started = time.monotonic()
        impatient = reload(stack, NGINX_OLD_WORKERS_WAIT="1")
        waited = time.monotonic() - started
        assert slow.result().status_code == 200
    assert impatient.returncode == 3
    assert "old workers" in impatient.stderr and "still hold requests 1s after the reload" in impatient.stderr
    assert 1 <= waited < 10  # its own 1 s, not the default read-timeout wait
    # With nothing in flight the same reload returns at once, successfully.
    assert reload(stack).returncode == 0


def followers(nginx_pid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.Process(nginx_pid).children(recursive=True):
        try:
            if any("follow-upstream.sh" in part for part in process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:  # a short-lived child (getent, sleep) came and went
            continue
    return found


def test_a_follower_that_dies_is_started_again_and_logged(stack):
    nginx_pid = stack.processes["nginx"].pid
    wait_until(lambda: len(followers(nginx_pid)) == 1, 10, "the upstream follower")
    (first,) = followers(nginx_pid)
    first.send_signal(signal.SIGKILL)  # by the PID read from nginx's own process tree
    wait_until(lambda: [f.pid for f in followers(nginx_pid)] not in ([], [first.pid]), 10, "a new follower")
    assert "follow-upstream.sh exited with 137 while nginx runs; starting it again" in stack.nginx_log.read_text()
    answer = requests.get(stack.base_url + "/readyz", headers={"Host": HOST}, timeout=10)
    assert answer.status_code == 200
