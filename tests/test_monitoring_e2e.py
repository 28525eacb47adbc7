"""The monitoring profile on the real compose stack: `make up MONITORING=1`, a load test with two
`make swap`s, and what Prometheus saw of it (docs/monitoring.md)."""

from __future__ import annotations

import json
import time

import pytest
import requests
from compose_stack import compose_stack
from harness import burst

pytestmark = pytest.mark.e2e


def series(panels: list[dict], title: str) -> dict[str, list[tuple[float, float]]]:
    (panel,) = [panel for panel in panels if panel["title"] == title]
    return {line["label"]: line["points"] for line in panel["lines"]}


def instant(port: int, query: str) -> float:
    """A query's value now (0 when it has no series)."""
    answer = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=10).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_monitoring_sees_every_layer_through_a_swap_and_nothing_of_it_is_public(images, tmp_path):
    stack = compose_stack("gunicorn")
    try:
        up = stack.make("up", MONITORING="1")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"Prometheus: http://127.0.0.1:{stack.prometheus_port}/" in up.stdout
        # run.py swaps to uWSGI at 30% of the run and back at 65%, with `make swap`.
        # 40 s: the swap back, at 65% of the run, takes some 9 s on 2 cores, and gunicorn must then
        # answer long enough for a rate over 6 s. At 24 s, one CI run's ended before it did.
        done = stack.make("loadtest", "SCENARIO=swap", "USERS=8", "DURATION=40s", f"RESULTS_DIR={tmp_path}")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        # The swap's steady rate seldom leaves a request waiting at a scrape's instant. Three times
        # the shipped 2 x 4 slots of 2 s requests (SLOW_MAX_MS) leave 16, then 8, waiting for 4 s:
        # two scrapes, 2 s apart, fall in that time, where 1 s requests left a single scrape's worth.
        load = burst(lambda: stack.get("/slow?ms=2000", timeout=30).status_code, 3 * 8)
        waiting = 0.0
        for _ in range(12):
            time.sleep(1)
            waiting = max(waiting, instant(stack.prometheus_port, "sum(appserver_queued_requests)"))
        assert [future.result() for future in load] == [200] * 3 * 8
        through_nginx = stack.get("/metrics")
        published = [json.loads(line) for line in stack.compose("ps", "--format", "json").stdout.splitlines()]
        # A target is down from its container's start until its exporter listens (a second or
        # two); every one must be up within a few scrapes.
        health = {}
        for _ in range(10):
            targets = requests.get(f"http://127.0.0.1:{stack.prometheus_port}/api/v1/targets", timeout=10).json()
            active = targets["data"]["activeTargets"]
            health = {target["scrapeUrl"]: (target["health"], target["lastError"]) for target in active}
            if all(state == "up" for state, _ in health.values()):
                break
            time.sleep(1)
    finally:
        stack.down("--volumes")
    (result,) = tmp_path.glob("*-swap")
    summary = json.loads((result / "summary.json").read_text())
    assert summary["failures"] == 0, summary["failure_reasons"]
    assert (result / "server-side.png").read_bytes().startswith(b"\x89PNG")
    panels = json.loads((result / "server-side.json").read_text())["panels"]
    print(summary["server_side"])

    # Every panel has data, and all but the waiting requests' moved during the run: busy threads,
    # answers, nginx, CPU, memory. Waiting requests moved under the burst after it.
    assert waiting > 0
    for panel in panels:
        assert panel["lines"], panel["title"]
        if panel["title"] != "App server: requests waiting for a thread":
            assert any(value > 0 for line in panel["lines"] for _, value in line["points"]), panel["title"]
    # One query, one chart: gunicorn answered before uWSGI took over, uWSGI in the middle, and
    # gunicorn again after the swap back.
    answers = series(panels, "App server: answers per second, by status")
    gunicorn = [at for at, value in answers["gunicorn 200"] if value > 0]
    uwsgi = [at for at, value in answers["uwsgi 200"] if value > 0]
    assert uwsgi, answers.keys()
    assert min(gunicorn) < min(uwsgi) and max(gunicorn) > max(uwsgi)
    busy = series(panels, "App server: requests in progress, and its slots")
    assert {"gunicorn busy", "uwsgi busy", "gunicorn slots", "uwsgi slots"} <= busy.keys()
    # CPU and memory of every container of the stack, the app servers' one replica each included.
    containers = {"gunicorn 1", "uwsgi 1", "nginx 1", "prometheus 1", "nginx-exporter 1", "cgroup-exporter 1"}
    for title in ("CPU by container", "Memory by container"):
        assert set(series(panels, title)) == containers, title
    memory = series(panels, "Memory by container")
    assert all(value > 1 for line in memory.values() for _, value in line), memory  # MiB

    # Every target Prometheus scraped answered; the app's metrics never through nginx, and the
    # only published ports are nginx's and Prometheus' own, on 127.0.0.1.
    assert {target["labels"]["job"] for target in targets["data"]["activeTargets"]} == {
        "app",
        "nginx",
        "containers",
        "prometheus",
    }
    print(health)
    assert all(state == "up" for state, _ in health.values()), health
    assert through_nginx.status_code == 404
    assert "appserver_" not in through_nginx.text
    ports = {
        (row["Service"], p["PublishedPort"], p["URL"])
        for row in published
        for p in row["Publishers"]
        if p["PublishedPort"]
    }
    assert {service for service, _, _ in ports} == {"nginx", "prometheus"}
    assert {url for service, _, url in ports if service == "prometheus"} == {"127.0.0.1"}
