"""Failure drills on the local-process harness: each server must lose nothing it can keep."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests
from harness import HOST, SERVERS, LocalStack, local_stack, wait_until


def get(stack: LocalStack, path: str, timeout: float = 15) -> requests.Response:
    return requests.get(stack.base_url + path, headers={"Host": HOST}, timeout=timeout)


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_finishes_every_request_in_flight_then_nginx_says_503(server):
    # 2 x 10 threads: room for all 20 slow requests at once, so all 20 are in the app.
    stack = local_stack(server, APP_THREADS="10").start()
    try:
        with ThreadPoolExecutor(20) as pool:
            slow = [pool.submit(get, stack, "/slow?ms=2000") for _ in range(20)]
            time.sleep(0.7)
            stack.processes["app"].send_signal(signal.SIGTERM)
            statuses = [future.result().status_code for future in slow]
        assert statuses == [200] * 20
        stack.processes["app"].wait(timeout=30)
        # No app server now: nginx answers at once, with a clear, retryable error.
        gone = get(stack, "/json")
        assert gone.status_code == 503
        assert gone.json() == {"error": "no app server is available right now; try again shortly"}
        assert gone.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        stack.stop()


@pytest.mark.parametrize("server", SERVERS)
def test_a_killed_worker_costs_at_most_its_own_requests(server):
    stack = local_stack(server).start()
    threads = int(stack.env["APP_THREADS"])
    outcomes: list[tuple[float, int]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                status = session.get(stack.base_url + "/slow?ms=20", headers={"Host": HOST}, timeout=5).status_code
            except requests.RequestException:
                status = 0
            outcomes.append((time.monotonic(), status))

    master = psutil.Process(stack.app_pid())
    try:
        # The entrypoint execs the server, so the process we started is the master.
        workers = master.children()
        assert len(workers) == int(stack.env["APP_WORKERS"])
        clients = [threading.Thread(target=keep_asking) for _ in range(6)]
        for client in clients:
            client.start()
        time.sleep(2)
        victim = workers[0]
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)  # a worker's PID, read from its master
        wait_until(lambda: len(master.children()) == len(workers) and victim not in master.children(), 10, "respawn")
        respawned_after = time.monotonic() - killed_at
        time.sleep(2)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)
        stack.stop()
    failed = [status for _, status in outcomes if status != 200]
    after = [status for at, status in outcomes if at > killed_at + 2]
    print(f"{server}: {len(failed)} of {len(outcomes)} failed; new worker after {respawned_after:.2f}s")
    assert len(failed) <= threads, failed
    assert respawned_after < 2
    assert after and all(status == 200 for status in after)
