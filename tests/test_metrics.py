"""The app server's and Django's metrics (app/stack/metrics.py): the same names under gunicorn and
uWSGI, moved by real load on the real servers, and nginx's own counters on its status port.

Each stack runs with METRICS_BIND, as `make up MONITORING=1` runs the containers, and the test
scrapes the exporter (app/stack/exporter.py) there, as Prometheus does. The load is three
times the shipped slots (2 workers x 4 threads) of half-second requests, so threads are all busy
and requests wait; under gevent every request gets a greenlet, and nothing waits.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import requests
from harness import MODELS, SERVERS, app_workers, burst, free_port, local_stack, wait_until
from prometheus_client.parser import text_string_to_metric_families

SLOTS = 2 * 4  # APP_WORKERS x APP_THREADS in .env
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    answer.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def exporter_answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels` (0 if there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("server", SERVERS)
def test_load_moves_every_app_server_and_django_metric_under_the_same_names(server, model):
    port = free_port()
    stack = local_stack(server, APP_WORKER_MODEL=model, METRICS_BIND=f"127.0.0.1:{port}").start()
    try:
        wait_until(lambda: exporter_answers(port), 20, "the metrics exporter")
        before = scrape(port)
        load = burst(lambda: requests.get(stack.base_url + "/slow?ms=500", timeout=30).status_code, 3 * SLOTS)
        busiest = waiting = in_flight = 0.0
        deadline = time.monotonic() + 10
        while not all(future.done() for future in load) and time.monotonic() < deadline:
            now = scrape(port)
            busy, queued = value(now, "appserver_busy_threads"), value(now, "appserver_queued_requests")
            busiest, waiting, in_flight = max(busiest, busy), max(waiting, queued), max(in_flight, busy + queued)
            time.sleep(0.05)
        statuses = [future.result() for future in load]
        assert requests.get(stack.base_url + "/queries?n=5", timeout=10).status_code == 200
        assert requests.get(stack.base_url + "/no-such-page", timeout=10).status_code == 404
        after = scrape(port)

        master = psutil.Process(stack.app_pid())
        workers = [worker.pid for worker in app_workers(master)]
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: value(scrape(port), "appserver_worker_restarts_total") >= 1, 20, "the restart counted")
        wait_until(lambda: value(scrape(port), "appserver_workers") == 2, 20, "two workers again")
        through_nginx = requests.get(stack.base_url + "/metrics", timeout=10)
    finally:
        stack.stop()
    print(f"{server} {model}: busy at most {busiest:.0f}, waiting at most {waiting:.0f}, both {in_flight:.0f}")
    assert statuses == [200] * (3 * SLOTS)
    assert value(before, "appserver_workers", server=server) == 2
    assert all(dict(labels).get("server") == server for _, labels in after)
    assert value(before, "appserver_worker_restarts_total") == 0
    # Every request seen at once, busy or waiting for a thread. A scrape reads the kernel's backlog
    # and the workers' busy count one after the other, so a request that left the backlog between
    # the two reads is counted twice: under threads one at most (a thread frees up for it), under
    # gevent any number (every request is accepted at once: CI saw 24 busy and 3 waiting).
    assert in_flight >= 3 * SLOTS
    if model == "threads":
        assert in_flight <= 3 * SLOTS + 1
        # At least one worker's threads all busy (gunicorn's gthread workers do not share the
        # connections evenly: one often takes them all), and the rest waiting: in the kernel's
        # backlog (uWSGI), or accepted and queued in the worker (gunicorn).
        assert 4 <= busiest <= SLOTS
        assert waiting >= 3 * SLOTS - busiest
    else:
        assert busiest == 3 * SLOTS
    ran = value(after, "appserver_request_duration_seconds_count", status="200") - value(
        before, "appserver_request_duration_seconds_count", status="200"
    )
    assert ran == 3 * SLOTS + 1
    assert value(after, "appserver_request_duration_seconds_count", status="404") == 1
    slow_seconds = value(after, "appserver_request_duration_seconds_sum", status="200")
    assert slow_seconds >= 3 * SLOTS * 0.5
    assert value(after, "django_view_duration_seconds_count", view="slow", method="GET") == 3 * SLOTS
    assert value(after, "django_db_queries_per_request_sum", view="queries") == 5
    assert value(after, "django_db_queries_per_request_sum", view="slow") == 0
    assert value(after, "appserver_busy_threads") == 0
    # nginx answers /metrics itself: the figures never leave the backend network through it.
    assert through_nginx.status_code == 404
    assert "appserver_" not in through_nginx.text


@pytest.mark.parametrize("server", SERVERS)
def test_nginx_counts_on_its_status_port_only_and_metrics_can_be_turned_off(server):
    stack = local_stack(server, METRICS_BIND="").start()
    try:
        status_port = stack.env["NGINX_STATUS_LISTEN"].rsplit(":", 1)[1]
        status = requests.get(f"http://127.0.0.1:{status_port}/stub_status", timeout=10)
        public = requests.get(stack.base_url + "/stub_status", timeout=10)
        processes = psutil.Process(stack.app_pid()).children()
    finally:
        stack.stop()
    # nginx's counters on its status port only; on the public port the path is the app's 404.
    assert status.status_code == 200
    assert status.text.startswith("Active connections:")
    assert public.status_code == 404
    assert "Active connections" not in public.text
    # Without METRICS_BIND no exporter runs: the master's children are its two workers.
    assert len(processes) == 2
