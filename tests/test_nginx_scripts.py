"""nginx's own scripts (render, reload, the upstream follower) on the local-process harness."""

from __future__ import annotations

import signal
import socket
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


@pytest.fixture
def unix_stack() -> Iterator[LocalStack]:
    """The shipped transport: uWSGI on a Unix socket, nginx following the socket directory each second."""
    running = local_stack("uwsgi", APP_TRANSPORT="unix", UPSTREAM_RECHECK_SECONDS="1").start()
    try:
        yield running
    finally:
        running.stop()


def upstream_servers(stack: LocalStack) -> set[str]:
    """The addresses in the rendered upstream block, between nginx.conf.template's markers."""
    conf = (Path(stack.env["NGINX_RUN_DIR"]) / "nginx.conf").read_text()
    block = conf.split("#servers-begin")[1].split("#servers-end")[0]
    return {line.split()[1] for line in block.strip().splitlines()}


def test_over_unix_sockets_nginx_follows_the_replicas_sockets_that_answer(unix_stack):
    own = f"unix:{unix_stack.app_address}"
    assert upstream_servers(unix_stack) == {own}
    answer = requests.get(unix_stack.base_url + "/readyz", headers={"Host": HOST}, timeout=10)
    assert (answer.status_code, answer.headers["X-App-Server"]) == (200, "uwsgi")
    directory = Path(unix_stack.env["APP_SOCKET_DIR"])
    # A replica killed before its clean-up: its socket file stays, and refuses connections.
    killed = socket.socket(socket.AF_UNIX)
    killed.bind(str(directory / "killed.sock"))
    killed.close()
    # A replica that comes up (`--scale`): its socket answers, and nginx adds it.
    new = socket.socket(socket.AF_UNIX)
    new.bind(str(directory / "new.sock"))
    (directory / "new.sock").chmod(0o666)
    new.listen(8)
    try:
        added = {own, f"unix:{directory / 'new.sock'}"}
        wait_until(lambda: upstream_servers(unix_stack) == added, 10, "nginx to add the new replica's socket")
    finally:
        new.close()  # gone without removing its file, like the killed one
    wait_until(lambda: upstream_servers(unix_stack) == {own}, 10, "nginx to drop the socket that stopped answering")
    answer = requests.get(unix_stack.base_url + "/readyz", headers={"Host": HOST}, timeout=10)
    assert answer.status_code == 200
    log = unix_stack.nginx_log.read_text()
    assert "new.sock" in log and "killed.sock" not in log  # never in the upstream


def test_over_unix_sockets_a_server_with_no_socket_that_answers_is_refused(unix_stack):
    before = run_dir_state(unix_stack)
    done = reload(unix_stack, APP_SERVER="gunicorn")
    assert done.returncode == 2
    assert f"no socket of gunicorn in {unix_stack.env['APP_SOCKET_ROOT']}/gunicorn accepts a connection" in done.stderr
    assert run_dir_state(unix_stack) == before


def test_a_replica_stays_whole_while_any_of_its_sockets_accepts(tmp_path):
    """upstream-servers.sh: a gunicorn worker that is restarting refuses on its own socket while
    its sibling accepts, and stays in the upstream; a replica whose sockets all refuse is left out."""
    directory = tmp_path / "gunicorn"
    directory.mkdir()
    sockets = []

    def bind(name: str, listening: bool) -> None:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(directory / name))
        if listening:
            sock.listen(8)
        sockets.append(sock)

    bind("a.w0.sock", listening=True)
    bind("a.w1.sock", listening=False)  # restarting: refuses
    bind("b.w0.sock", listening=False)  # killed: both refuse
    bind("b.w1.sock", listening=False)
    bind("c.sock", listening=True)  # uWSGI's one
    bind("d.sock", listening=False)
    try:
        done = subprocess.run(
            [str(ROOT / "nginx" / "upstream-servers.sh"), "gunicorn", "unused"],
            env={"PATH": "/usr/bin:/bin", "APP_TRANSPORT": "unix", "APP_SOCKET_ROOT": str(tmp_path)},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    finally:
        for sock in sockets:
            sock.close()
    listed = [line.split()[1] for line in done.stdout.splitlines()]
    assert listed == [f"unix:{directory / name}" for name in ("a.w0.sock", "a.w1.sock", "c.sock")]
