"""The report's headline figures beside the previous run's: two raw.json files, the same analysis.

bench.py passes the last published run (docs/bench/raw.json) as the previous one; report.py takes
it as a second argument. Only a run of the same profile is compared. A figure one of the runs lacks
shows as "-".
"""

import math

from bench_targets import SEPARATE_CORES
from report_analysis import SERVERS, by_label, proxy_costs, proxy_tax

NAMES = {"gunicorn": "gunicorn", "uwsgi": "uWSGI"}
# Section 1's paths, in the report's order, and what each is called here.
PATHS = {
    "gunicorn": "gunicorn, Unix socket (shipped)",
    "uwsgi": "uWSGI, Unix socket (shipped)",
    "gunicorn, TCP": "gunicorn, TCP",
    "uwsgi, TCP": "uWSGI, TCP",
    f"gunicorn{SEPARATE_CORES}": "gunicorn, Unix socket, app server and nginx on separate cores",
    f"uwsgi{SEPARATE_CORES}": "uWSGI, Unix socket, app server and nginx on separate cores",
}


def headline(data: dict) -> dict[str, tuple[float, str]]:
    """Figure name -> (value, format): what the report's summary and the README's table rest on."""
    runs = data.get("runs", [])
    tax = proxy_tax(runs, data.get("separate_cores", {}).get("app", ""))
    costs = proxy_costs(tax)
    figures: dict[str, tuple[float, str]] = {}
    for server in SERVERS:
        if server in tax:
            figures[f"`/plaintext` through nginx, {NAMES[server]} (req/s)"] = (tax[server]["nginx"], ",.0f")
    for path, name in PATHS.items():
        if path in tax:
            figures[f"proxy tax, {name}"] = (tax[path]["ratio"], ".2f")
    for path, name in PATHS.items():
        if path in tax:
            figures[f"nginx CPU per proxied request, {name} (µs)"] = (costs[path]["nginx"]["nginx"], ".0f")
    paced = by_label(runs, "peers-paced")
    for server in SERVERS:
        for label, steady in sorted(paced.items()):
            if label.startswith(f"ours: {server} "):
                shares = [r.get("busiest_worker_share", math.nan) for r in steady]
                endpoint = label.removeprefix(f"ours: {server} ").split("@")[0]
                figures[f"busiest worker's share, {NAMES[server]} `/{endpoint}` steady (most of any round)"] = (
                    max(shares, default=math.nan),
                    ".2f",
                )
    for name, result in sorted(data.get("stream_capacity", {}).items()):
        figures[f"open event streams held, {name}"] = (float(result.get("capacity", math.nan)), ",.0f")
    return figures


def cell(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def comparison(data: dict, previous: dict | None) -> list[str]:
    """The Markdown section: every headline figure of this run beside the previous run's."""
    if previous is None or previous.get("profile") != data.get("profile"):
        return []
    now, before = headline(data), headline(previous)
    when = previous.get("machine", {}).get("date", "")
    lines = [
        "## Against the previous run",
        "",
        f"The headline figures of this run beside those of the previous published run{f' ({when})' if when else ''},"
        " computed the same way from each run's raw.json. Both ran on this machine; a change within a few"
        " percent is inside the noise between runs (docs/performance.md).",
        "",
        "| figure | previous | this run |",
        "| --- | --- | --- |",
    ]
    for name in [*now, *(name for name in before if name not in now)]:
        spec = (now.get(name) or before[name])[1]
        old, new = before.get(name, (math.nan, spec))[0], now.get(name, (math.nan, spec))[0]
        lines.append(f"| {name} | {cell(old, spec)} | {cell(new, spec)} |")
    lines.append("")
    return lines
