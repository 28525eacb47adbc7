"""Run one Locust scenario headless, bounded, and summarise it from the raw per-request times.

Writes results/<UTC time>-<server>-<scenario>/ with Locust's CSV and HTML, the raw rows,
and summary.json: requests per second, exact p50/p95/p99, failures, and the generator's own
CPU. A run in which Locust went over 90% CPU is marked invalid: then the generator, not the
server, set the pace. The exit code is 1 when a threshold of the scenario fails.

Usage: python loadtest/run.py SCENARIO --host URL [--users N] [--duration 20s] ...
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The project's one percentile (nearest rank: an observed sample, never interpolated) is shared with
# the bench report, in loadtest/bench/percentiles.py (standard library only).
sys.path.append(str(HERE / "bench"))
import server_side  # noqa: E402
from percentiles import percentile  # noqa: E402
from stream_capacity import capacity  # noqa: E402  (loadtest/, this file's own directory)

GENERATOR_CPU_LIMIT = 90.0


@dataclass(frozen=True)
class Scenario:
    locustfile: str
    max_fail_ratio: float
    max_p95_ms: float
    what: str
    # swap only: how much worse p99 may get while a swap runs, as a multiple of the steady p99.
    max_swap_p99_ratio: float | None = None
    # Locust processes unless --processes says otherwise.
    processes: int = 1


# Scenario name -> its Locust file: loadtest/locust_<name>.py, never <name>.py, which would
# shadow a module of that name (scripts/swap.py) on the tests' shared import path.
SCENARIOS = {
    "throughput": Scenario(
        "locust_throughput.py", 0.0, 500.0, "plaintext, json, db and queries as fast as they answer"
    ),
    # p95 here is the time to headers: a stream holds a thread, so it grows once users > threads.
    "streaming": Scenario("locust_streaming.py", 0.0, 1000.0, "/stream and /events, timed chunk by chunk"),
    "swap": Scenario("locust_swap.py", 0.0, 500.0, "a steady rate while the app server is swapped", 3.0),
    # Its verdict is the capacity (stream_capacity.py): late events and a slow probe only end the ramp.
    # Two Locust processes, as make bench runs it: thousands of streams' events split over two cores.
    "streams": Scenario(
        "locust_streams.py",
        1.0,
        float("inf"),
        "event streams ramped up until an event is late or /plaintext slow",
        None,
        2,
    ),
}
SWAP_COMMAND = "make --no-print-directory swap TO={to}"
# Requests this close to a swap's start or end count as the swap's, not the steady state's.
SWAP_MARGIN_S = 1.0


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"a duration like 20s, 2m or 30, got {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def latency_stats(rows: list[dict[str, str]]) -> dict[str, float]:
    times = sorted(float(row["response_time_ms"]) for row in rows)
    return {
        "requests": len(times),
        "p50_ms": round(percentile(times, 0.50), 2),
        "p95_ms": round(percentile(times, 0.95), 2),
        "p99_ms": round(percentile(times, 0.99), 2),
        "max_ms": round(times[-1], 2) if times else float("nan"),
    }


def read_rows(out: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(out.glob("requests-*.csv")):
        with path.open(newline="") as file:
            rows.extend(csv.DictReader(file))
    return rows


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sample_cpu(process: psutil.Process, deadline: float) -> list[tuple[float, float]]:
    """(time, CPU%) each second for each Locust process (100 = one core), until all have exited: the
    workers write their rows as they quit, which can be after the master has gone."""
    samples: list[tuple[float, float]] = []
    watched: dict[int, psutil.Process] = {}
    while time.monotonic() < deadline and (alive(process) or any(alive(proc) for proc in watched.values())):
        try:
            for proc in [process, *process.children(recursive=True)] if alive(process) else []:
                if proc.pid not in watched:
                    watched[proc.pid] = proc
                    proc.cpu_percent(None)  # the first call only starts the measurement
        except psutil.NoSuchProcess:
            pass
        time.sleep(1)
        for proc in list(watched.values()):
            try:
                samples.append((time.time(), proc.cpu_percent(None)))
            except psutil.NoSuchProcess:
                watched.pop(proc.pid)
    return samples


def parse_plan(text: str) -> list[tuple[float, str]]:
    """ "8:uwsgi,16:gunicorn" -> [(8.0, "uwsgi"), (16.0, "gunicorn")]: seconds after the start."""
    plan = []
    for item in filter(None, text.split(",")):
        at, _, target = item.partition(":")
        plan.append((seconds(at), target.strip()))
    return sorted(plan)


def answering_server(host: str) -> str:
    # recording.py sends the same header; it imports Locust (and gevent), which this process must not.
    header = os.environ.get("LOADTEST_HOST_HEADER")
    request = urllib.request.Request(host.rstrip("/") + "/readyz", headers={"Host": header} if header else {})
    # Unverified, as Locust's users are (locust_throughput.py says why).
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        return response.headers.get("X-App-Server", "unknown")


def run_swaps(plan: list[tuple[float, str]], command: str, begin: float, events: Path) -> None:
    """Run the swap command at each planned moment; the command appends its own phase events."""
    for at, target in plan:
        time.sleep(max(0.0, begin + at - time.time()))
        started = time.time()
        done = subprocess.run(
            command.format(to=target),
            shell=True,
            cwd=ROOT,
            env={**os.environ, "SWAP_EVENTS_FILE": str(events)},
        )
        if done.returncode != 0:
            with events.open("a") as file:
                file.write(json.dumps({"event": "failed", "to": target, "time": started}) + "\n")


def read_swaps(events: Path) -> list[dict]:
    """Group the events file into one record per swap: start, cutover, done (or failed)."""
    swaps: list[dict] = []
    if not events.exists():
        return swaps
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start" or not swaps:
            swaps.append({"to": event["to"]})
        swaps[-1][event["event"]] = event["time"]
    return swaps


def swap_phases(rows: list[dict[str, str]], swaps: list[dict]) -> dict:
    """Steady state against the swap windows (start to done) and the cutovers (reload to done)."""

    def within(row: dict[str, str], key: str) -> bool:
        start = float(row["start"])
        return any(
            swap.get(key, swap.get("start", 0)) - SWAP_MARGIN_S <= start <= swap.get("done", 0) + SWAP_MARGIN_S
            for swap in swaps
        )

    phases = {
        "steady": [row for row in rows if not within(row, "start")],
        "swap": [row for row in rows if within(row, "start")],
        "cutover": [row for row in rows if within(row, "cutover")],
    }
    return {
        name: {
            **latency_stats(phase),
            "failures": sum(row["failed"] == "1" for row in phase),
            "non_2xx": sum(not row["status"].startswith("2") for row in phase),
            "servers": dict(Counter(row["server"] for row in phase if row["server"])),
        }
        for name, phase in phases.items()
    }


def summarise(rows: list[dict[str, str]], begin: float, warmup: float) -> dict:
    kept = [row for row in rows if float(row["start"]) >= begin + warmup]
    # The measured window: from the end of the warm-up to the last request started.
    measured = max((float(row["start"]) for row in kept), default=begin + warmup) - (begin + warmup)
    http = [row for row in kept if row["request_type"] != "STREAM"]
    failures = [row for row in http if row["failed"] == "1"]
    by_name: dict[str, dict] = {}
    for name in sorted({row["name"] for row in kept}):
        named = [row for row in kept if row["name"] == name]
        by_name[name] = {**latency_stats(named), "failures": sum(row["failed"] == "1" for row in named)}
    servers = Counter(row["server"] for row in http if row["server"])
    return {
        "requests": len(http),
        "requests_per_second": round(len(http) / measured, 1) if measured > 0 else 0.0,
        **{key: value for key, value in latency_stats(http).items() if key != "requests"},
        "failures": len(failures),
        "fail_ratio": round(len(failures) / len(http), 5) if http else 1.0,
        "failure_reasons": dict(Counter(row["error"] for row in failures).most_common(5)),
        "servers": dict(servers),
        "by_name": by_name,
    }


def run(args: argparse.Namespace) -> tuple[int, Path | None]:
    """Run the scenario; return the exit code and the results directory."""
    scenario = SCENARIOS[args.scenario]
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = Path(args.results_dir)
    out = results / f".running-{started_at}-{args.scenario}"
    out.mkdir(parents=True, exist_ok=True)
    duration = args.duration
    processes = args.processes or scenario.processes
    warmup = args.warmup if args.warmup is not None else min(5.0, duration * 0.1)
    command = [
        sys.executable, "-m", "locust", "-f", str(HERE / scenario.locustfile), "--headless",
        "--host", args.host, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate or args.users),
        "--run-time", f"{duration:g}s", "--stop-timeout", "5", "--processes", str(processes),
        "--csv", str(out / "locust"), "--html", str(out / "locust.html"),
        "--exit-code-on-error", "0", "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    env = {**os.environ, "LOADTEST_OUT": str(out)}
    events = Path(args.swap_events) if args.swap_events else out / "swap-events.jsonl"
    plan: list[tuple[float, str]] = []
    if args.scenario == "swap":
        plan = parse_plan(args.swap_plan) if args.swap_plan else default_plan(args.host, duration)
    begin = time.time()
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    if plan and args.swap_command:
        threading.Thread(target=run_swaps, args=(plan, args.swap_command, begin, events), daemon=True).start()
    timed_samples = sample_cpu(psutil.Process(process.pid), time.monotonic() + duration + 60)
    # Only samples under load: start-up (imports) and the warm-up are not load generation.
    samples = [cpu for at, cpu in timed_samples if at >= begin + warmup] or [cpu for _, cpu in timed_samples]
    try:
        returncode = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        returncode = process.wait()
    end = time.time()
    if returncode != 0:
        print(f"locust exited with {returncode}; see the output above", file=sys.stderr)
        return 2, None

    rows = read_rows(out)
    summary = {
        "scenario": args.scenario,
        "what": scenario.what,
        "started_at": started_at,
        "host": args.host,
        "users": args.users,
        "duration_s": duration,
        "warmup_s": warmup,
        **summarise(rows, begin, warmup),
    }
    if args.scenario == "streams":
        summary["streams"] = capacity(rows, begin)
    if args.scenario == "swap":
        http_rows = [row for row in rows if row["request_type"] != "STREAM"]
        summary["swaps"] = read_swaps(events)
        summary["phases"] = swap_phases(
            [row for row in http_rows if float(row["start"]) >= begin + warmup], summary["swaps"]
        )
    generator = {
        "cpu_mean_percent": round(sum(samples) / len(samples), 1) if samples else None,
        "cpu_max_percent": round(max(samples), 1) if samples else None,
        "cpu_limit_percent": GENERATOR_CPU_LIMIT,
        "processes": processes,
    }
    generator["valid"] = bool(samples) and max(samples) <= GENERATOR_CPU_LIMIT
    summary["generator"] = generator
    summary["valid"] = generator["valid"]
    max_fail_ratio = scenario.max_fail_ratio if args.max_fail_ratio is None else args.max_fail_ratio
    max_p95 = scenario.max_p95_ms if args.max_p95_ms is None else args.max_p95_ms
    breaches = []
    if summary["fail_ratio"] > max_fail_ratio:
        breaches.append(f"fail ratio {summary['fail_ratio']} > {max_fail_ratio}")
    if not summary["p95_ms"] <= max_p95:  # NaN (no requests) breaches too
        breaches.append(f"p95 {summary['p95_ms']} ms > {max_p95} ms")
    if scenario.max_swap_p99_ratio is not None:
        breaches += swap_breaches(summary, plan, scenario.max_swap_p99_ratio)
    summary["thresholds"] = {
        "max_fail_ratio": max_fail_ratio,
        "max_p95_ms": max_p95,
        "max_swap_p99_ratio": scenario.max_swap_p99_ratio,
        "breaches": breaches,
    }

    server = "+".join(sorted(summary["servers"])) or "unknown"
    final = results / f"{started_at}-{server}-{args.scenario}"
    out.rename(final)
    try:
        summary["server_side"] = server_side.chart(begin, end, final)
        summary["server_side_chart"] = (final / "server-side.png").exists()
    except (requests.RequestException, KeyError, ValueError) as error:  # the run stands without it
        summary["server_side"] = f"server side: Prometheus did not answer the queries ({error})"
    (final / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary, final)
    return (1 if breaches else 0), final


def default_plan(host: str, duration: float) -> list[tuple[float, str]]:
    """Swap away from the active server at 30% of the run and back at 65%."""
    active = answering_server(host)
    other = next(server for server in ("gunicorn", "uwsgi") if server != active)
    return [(round(duration * 0.30, 1), other), (round(duration * 0.65, 1), active)]


def swap_breaches(summary: dict, plan: list[tuple[float, str]], max_ratio: float) -> list[str]:
    breaches = []
    swaps, phases = summary["swaps"], summary["phases"]
    if len(swaps) != len(plan) or not all("done" in swap and "failed" not in swap for swap in swaps):
        breaches.append(f"{len(plan)} swaps planned, completed: {sum('done' in swap for swap in swaps)}")
    for phase in ("steady", "swap"):
        if phases[phase]["non_2xx"]:
            breaches.append(f"{phases[phase]['non_2xx']} non-2xx responses in the {phase} phase")
    steady, during = phases["steady"]["p99_ms"], phases["swap"]["p99_ms"]
    if not during <= max_ratio * steady:
        breaches.append(f"swap-window p99 {during} ms > {max_ratio:g} x steady p99 {steady} ms")
    return breaches


def print_summary(summary: dict, where: Path) -> None:
    generator = summary["generator"]
    print(f"\n{summary['scenario']} against {summary['host']} ({'+'.join(summary['servers']) or '?'}):")
    print(
        f"  {summary['requests_per_second']} req/s over {summary['duration_s'] - summary['warmup_s']:g}s, "
        f"p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, p99 {summary['p99_ms']} ms, "
        f"{summary['failures']} failed of {summary['requests']}"
    )
    for reason, count in summary["failure_reasons"].items():
        print(f"    {count} x {reason}")
    for name, phase in summary.get("phases", {}).items():
        print(
            f"  {name:8} {phase['requests']:6} requests, p50 {phase['p50_ms']} ms, p99 {phase['p99_ms']} ms, "
            f"max {phase['max_ms']} ms, {phase['failures']} failed, {phase['non_2xx']} non-2xx, {phase['servers']}"
        )
    streams = summary.get("streams")
    if streams:
        for step in streams["steps"]:
            print(
                f"  {step['clients']:6} streams: {step['events']} events, latest {step['max_lateness_ms']} ms, "
                f"{step['late']} late, {step['failed']} failed, /plaintext p99 {step['probe_p99_ms']} ms"
                + ("" if step["kept"] else "  <- a bound broke")
            )
        print(
            f"  capacity: {streams['capacity']} open streams with every event within {streams['late_ms']:g} ms "
            f"and /plaintext p99 under {streams['probe_p99_ms']:g} ms"
        )
    for swap in summary.get("swaps", []):
        took = swap.get("done", float("nan")) - swap.get("start", float("nan"))
        print(f"  swap to {swap['to']}: {'done' if 'done' in swap else 'FAILED'} in {took:.1f} s")
    print(
        f"  generator CPU: mean {generator['cpu_mean_percent']}%, "
        f"max {generator['cpu_max_percent']}% of a core (per process, 1 s samples)"
    )
    if not summary["valid"]:
        print(
            f"  INVALID: the load generator went over {GENERATOR_CPU_LIMIT:g}% CPU, so it, not the server, "
            "was the limit; use fewer users or more --processes"
        )
    for breach in summary["thresholds"]["breaches"]:
        print(f"  THRESHOLD FAILED: {breach}")
    if "server_side" in summary:
        print(f"  {summary['server_side']}")
    print(f"  results: {where}")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("scenario", help=f"one of: {', '.join(SCENARIOS)}")
    parse.add_argument("--host", required=True, help="the stack's base URL, e.g. https://localhost:8443")
    parse.add_argument("--users", type=int, default=20)
    parse.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    parse.add_argument("--duration", type=seconds, default="20s")
    parse.add_argument(
        "--warmup", type=seconds, default=None, help="left out of the figures (default: 10%% of the run, at most 5s)"
    )
    parse.add_argument("--processes", type=int, help="Locust processes (default 1, streams 2); one per free core")
    parse.add_argument("--max-p95-ms", type=float, default=None, help="override the scenario's p95 threshold")
    parse.add_argument("--max-fail-ratio", type=float, default=None, help="override the scenario's failure threshold")
    parse.add_argument("--results-dir", default=str(ROOT / "results"))
    parse.add_argument(
        "--swap-plan",
        default=None,
        help='swap only: "8:uwsgi,16:gunicorn" (default: away at 30%%, back at 65%%)',
    )
    parse.add_argument(
        "--swap-command", default=SWAP_COMMAND, help="swap only: run with {to}; empty: someone else swaps"
    )
    parse.add_argument("--swap-events", default=None, help="swap only: where the swaps log their phases")
    return parse


def check_scenario(name: str) -> None:
    if name not in SCENARIOS:
        print(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    check_scenario(args.scenario)
    return run(args)[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
