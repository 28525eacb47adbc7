"""gunicorn's workers share the load behind nginx's keep-alive pool: over the shipped Unix sockets
each worker has a socket of its own, a server of its own in nginx's upstream (gunicorn.conf.py,
bind; nginx.conf.template, least_conn)."""

from __future__ import annotations

import collections
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
from harness import APP_DIR, HOST, MODELS, ROOT, LocalStack, app_workers, free_port, local_stack, wait_until
from stack.healthcheck import status_of

# Requests per client. Each client sends one at a time on a kept-alive connection to nginx: the
# moderate load under which one worker used to take nearly all of them (docs/bench/report.md, section 3).
REQUESTS = 150


@pytest.fixture(params=MODELS)
def gunicorn_on_sockets(request) -> Iterator[LocalStack]:
    running = local_stack("gunicorn", APP_TRANSPORT="unix", APP_WORKER_MODEL=request.param).start()
    try:
        yield running
    finally:
        running.stop()


def socket_inodes(directory: str) -> dict[int, str]:
    """The listening Unix sockets bound under `directory`: inode -> path (/proc/net/unix)."""
    found = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[7].startswith(directory + "/") and fields[3] == "00010000":  # __SO_ACCEPTCON
            found[int(fields[6])] = fields[7]
    return found


def sockets_held(process: psutil.Process, inodes: dict[int, str]) -> set[str]:
    """The paths of the sockets among `inodes` the process has open."""
    held = set()
    for fd in Path(f"/proc/{process.pid}/fd").iterdir():
        match = re.fullmatch(r"socket:\[(\d+)\]", str(fd.readlink()))
        if match and int(match.group(1)) in inodes:
            held.add(inodes[int(match.group(1))])
    return held


def upstream_counts(stack: LocalStack, path: str, expected: int) -> collections.Counter[str]:
    """How many requests for `path` nginx sent to each upstream address, from its JSON access log
    (buffered: flushed each second)."""

    def counts() -> collections.Counter[str]:
        lines = Path(stack.env["NGINX_ACCESS_LOG"]).read_text().splitlines()
        return collections.Counter(entry["upstream"] for entry in map(json.loads, lines) if entry["uri"] == path)

    wait_until(lambda: sum(counts().values()) >= expected, 10, f"nginx to log {expected} requests for {path}")
    return counts()


def client(stack: LocalStack, path: str) -> list[int]:
    with requests.Session() as session:
        url = stack.base_url + path
        return [session.get(url, headers={"Host": HOST}, timeout=10).status_code for _ in range(REQUESTS)]


def test_each_gunicorn_worker_has_a_socket_and_an_even_share(gunicorn_on_sockets):
    stack = gunicorn_on_sockets
    directory = stack.env["APP_SOCKET_DIR"]
    inodes = socket_inodes(directory)
    workers = app_workers(psutil.Process(stack.app_pid()))
    # A socket per worker, each held by the master and by that worker alone.
    assert len(inodes) == len(workers) == int(stack.env["APP_WORKERS"])
    assert sockets_held(psutil.Process(stack.app_pid()), inodes) == set(inodes.values())
    held = [sockets_held(worker, inodes) for worker in workers]
    assert sorted(len(paths) for paths in held) == [1] * len(workers)
    assert set().union(*held) == set(inodes.values())
    # Each is a server in nginx's upstream.
    conf = (Path(stack.env["NGINX_RUN_DIR"]) / "nginx.conf").read_text()
    assert {f"unix:{path}" for path in inodes.values()} <= set(re.findall(r"server (unix:\S+)", conf))

    # One client, then two at once, a request at a time each.
    assert client(stack, "/plaintext") == [200] * REQUESTS
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda path: client(stack, path), ["/json", "/json"]))
    assert answers == [[200] * REQUESTS] * 2
    for path, sent in (("/plaintext", REQUESTS), ("/json", 2 * REQUESTS)):
        counts = upstream_counts(stack, path, sent)
        shares = sorted(count / sent for count in counts.values())
        print(f"{stack.env['APP_WORKER_MODEL']} {path}: shares {shares}")
        assert len(counts) == len(workers) and all(0.4 <= share <= 0.6 for share in shares), counts


def test_a_restarted_worker_takes_over_its_socket(gunicorn_on_sockets):
    """A worker killed outright (as the heartbeat timeout does) leaves its socket with the master;
    the worker started in its place accepts on it, and what waited there meanwhile is answered."""
    stack = gunicorn_on_sockets
    directory = stack.env["APP_SOCKET_DIR"]
    inodes = socket_inodes(directory)
    master = psutil.Process(stack.app_pid())
    killed = app_workers(master)[0]
    slot = sockets_held(killed, inodes)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    # Requests meanwhile: nginx sends some to the killed worker's socket, where they wait.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda path: client(stack, path), ["/plaintext", "/plaintext"]))
    assert answers == [[200] * REQUESTS] * 2

    def replaced() -> bool:
        workers = app_workers(master)
        return len(workers) == int(stack.env["APP_WORKERS"]) and killed.pid not in {worker.pid for worker in workers}

    wait_until(replaced, 30, "gunicorn to start a worker in place of the killed one")
    assert socket_inodes(directory) == inodes  # the same sockets, never re-made
    assert any(sockets_held(worker, inodes) == slot for worker in app_workers(master))
    # Some of the requests waited on the killed worker's socket, and were answered from it.
    (path,) = slot
    assert upstream_counts(stack, "/plaintext", 2 * REQUESTS)[f"unix:{path}"] >= 1


def refuses(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return True
    return False


def test_a_stopping_worker_refuses_new_connections_and_its_successor_gets_a_fresh_socket(gunicorn_on_sockets):
    """A worker told to stop (as MAX_REQUESTS and the watchdog do) refuses new connections on its
    socket at once, so nginx sends those requests to another worker instead of queueing them
    behind the drain; the worker that takes its slot accepts on a fresh socket at the same path."""
    stack = gunicorn_on_sockets
    inodes = socket_inodes(stack.env["APP_SOCKET_DIR"])
    master = psutil.Process(stack.app_pid())
    stopping = app_workers(master)[0]
    (path,) = sockets_held(stopping, inodes)
    with ThreadPoolExecutor(1) as pool:
        # A request in the worker's hands when the stop comes: answered, and the drain lasts 2 s.
        slow = pool.submit(status_of, "http", path, "/slow?ms=2000")
        time.sleep(0.5)
        stopping.send_signal(signal.SIGTERM)
        wait_until(lambda: refuses(path), 3, "the stopping worker to refuse new connections")
        # Meanwhile nginx answers from the other worker, at once.
        started = time.monotonic()
        assert client(stack, "/plaintext") == [200] * REQUESTS
        took = time.monotonic() - started
        assert slow.result(timeout=30) == 200
    wait_until(lambda: not stopping.is_running(), 30, "the stopping worker to exit")
    wait_until(lambda: not refuses(path), 30, "a new worker to accept on the slot's socket")
    assert path in socket_inodes(stack.env["APP_SOCKET_DIR"]).values()
    assert status_of("http", path) == 200
    print(f"{stack.env['APP_WORKER_MODEL']}: {REQUESTS} requests during the drain in {took:.2f} s")
    assert took < 2, "requests waited for the stopping worker"
    # The container healthcheck asks every socket.
    check = subprocess.run(
        [sys.executable, "-m", "stack.healthcheck", "http"], env=stack.env, cwd=APP_DIR, capture_output=True, text=True
    )
    assert (check.returncode, check.stdout.strip()) == (
        0,
        f"healthcheck: /readyz answered 200 on {len(inodes)} socket(s)",
    )


def test_a_restarting_worker_leaves_a_socket_all_workers_share_accepting(tmp_path):
    """The bench adds a TCP port every worker accepts on (loadtest/bench/gunicorn_tcp_too.py): a
    worker's refusal must stop only its own socket. Workers restart every 50 requests here."""
    port = free_port()
    config = tmp_path / "tcp_too.py"
    config.write_text(
        "import runpy\n"
        f"shipped = runpy.run_path({str(ROOT / 'gunicorn' / 'gunicorn.conf.py')!r})\n"
        "globals().update({k: v for k, v in shipped.items() if not k.startswith('__')})\n"
        f"bind = [*shipped['bind'], '127.0.0.1:{port}']\n"
    )
    stack = local_stack("gunicorn", APP_TRANSPORT="unix")
    env = {**stack.env, "MAX_REQUESTS": "50", "MAX_REQUESTS_JITTER": "0"}
    Path(env["APP_SOCKET_DIR"]).mkdir(parents=True)
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", str(config)], cwd=APP_DIR, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/plaintext"
    try:

        def answers() -> bool:
            try:
                return status_of("http", port, "/plaintext") == 200
            except (OSError, ValueError, IndexError):
                return False

        wait_until(answers, 30, "gunicorn to answer on its TCP port")
        with requests.Session() as session:
            statuses = [session.get(url, headers={"Host": HOST}, timeout=10).status_code for _ in range(300)]
    finally:
        server.terminate()
        server.wait(40)
    assert statuses == [200] * 300
    assert (tmp_path / "gunicorn.log").read_text().count("Autorestarting worker") >= 4
