"""The server's side of a load test, from Prometheus (`make up MONITORING=1`), next to Locust's view.

run.py calls chart() when a run ends: server-side.png (one panel per layer, time along the
bottom, one line per app server, so a swap shows the two handing over) and server-side.json (the
same series, raw). With no Prometheus answering it says why and the run goes on without them.
The metric names are docs/monitoring.md's.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import requests

# Seconds between the points of a chart.
STEP = 1.0
# Wider than two scrapes (prometheus/prometheus.yml scrapes every 2 s), so every point has a rate.
RATE = "[6s]"


def by_container(expression: str) -> str:
    """One series per container, named by its service and replica number (the end of its name)."""
    summed = f"sum by (service, container) ({expression})"
    return f'label_replace({summed}, "replica", "$1", "container", ".*-([0-9]+)")'


# (panel title, y-axis label, [(query, legend with {label} placeholders)])
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "App server: requests in progress, and its slots",
        "requests",
        [
            ("sum by (server) (appserver_busy_threads)", "{server} busy"),
            ("sum by (server) (appserver_threads)", "{server} slots"),
        ],
    ),
    (
        "App server: requests waiting for a thread",
        "requests",
        [("sum by (server, where) (appserver_queued_requests)", "{server} {where}")],
    ),
    (
        "App server: answers per second, by status",
        "per second",
        [(f"sum by (server, status) (rate(appserver_request_duration_seconds_count{RATE}))", "{server} {status}")],
    ),
    (
        "nginx: client connections",
        "connections",
        [
            ("nginx_connections_active", "active"),
            ("nginx_connections_writing", "writing (a request in progress)"),
            ("nginx_connections_waiting", "waiting (idle keep-alive)"),
        ],
    ),
    (
        "CPU by container",
        "cores",
        [(by_container(f"rate(container_cpu_usage_seconds_total{RATE})"), "{service} {replica}")],
    ),
    (
        "Memory by container",
        "MiB",
        [(by_container("container_memory_working_set_bytes / 2^20"), "{service} {replica}")],
    ),
]


def prometheus_url() -> str:
    if url := os.environ.get("PROMETHEUS_URL"):
        return url.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('PROMETHEUS_PORT') or 9090}"


def answering(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def query_range(url: str, query: str, start: float, end: float, step: float) -> list[dict]:
    answer = requests.get(
        f"{url}/api/v1/query_range", params={"query": query, "start": start, "end": end, "step": step}, timeout=10
    )
    answer.raise_for_status()
    return answer.json()["data"]["result"]


def chart(begin: float, end: float, out: Path) -> str:
    """Write server-side.png and .json for [begin, end] (Unix seconds); say what was done."""
    url = prometheus_url()
    if not answering(url):
        return f"server side: no Prometheus at {url} (make up MONITORING=1 starts one); Locust's side only"
    time.sleep(3)  # the run's last seconds reach Prometheus with its next scrape
    data = []
    for title, unit, queries in PANELS:
        lines = []
        for query, legend in queries:
            for series in query_range(url, query, begin - 4, end + 2, STEP):
                points = [(float(at) - begin, float(value)) for at, value in series["values"]]
                lines.append({"label": legend.format_map(_Blank(series["metric"])), "query": query, "points": points})
        data.append({"title": title, "unit": unit, "lines": lines})
    (out / "server-side.json").write_text(json.dumps({"prometheus": url, "begin": begin, "panels": data}, indent=1))
    _draw(data, out / "server-side.png")
    empty = [panel["title"] for panel in data if not panel["lines"]]
    note = f"; no data for: {', '.join(empty)}" if empty else ""
    return f"server side: {out / 'server-side.png'} (from {url}){note}"


class _Blank(dict):
    """Legend placeholders for labels a series does not have come out empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _with_gaps(points: list[tuple[float, float]], step: float = STEP) -> tuple[list[float], list[float]]:
    """The points, broken where the series has none (a container that was not running): a line
    drawn across the gap would show a server answering while it was stopped."""
    xs: list[float] = []
    ys: list[float] = []
    for at, value in points:
        if xs and at - xs[-1] > 1.5 * step:
            xs.append(xs[-1] + step)
            ys.append(float("nan"))
        xs.append(at)
        ys.append(value)
    return xs, ys


def _draw(panels: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 2.6 * len(panels)), sharex=True)
    for axis, panel in zip(axes, panels, strict=True):
        for line in panel["lines"]:
            xs, ys = _with_gaps(line["points"])
            axis.plot(xs, ys, label=line["label"].strip(), drawstyle="steps-post")
        axis.set_title(panel["title"], fontsize=10, loc="left")
        axis.set_ylabel(panel["unit"])
        axis.grid(alpha=0.3)
        if panel["lines"]:
            axis.legend(fontsize=7, loc="upper right")
        else:
            axis.text(0.5, 0.5, "no data", transform=axis.transAxes, ha="center", va="center", color="grey")
    axes[-1].set_xlabel("seconds since the run began")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
