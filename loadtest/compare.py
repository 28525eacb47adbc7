"""gunicorn against uWSGI on one scenario, in interleaved rounds, with a report a person can read.

Rounds go A B, B A, A B, ... so drift over time (a warming page cache, a neighbour's load)
falls on both servers alike. Each round switches the running compose stack with `make up`
and runs loadtest/run.py against it. results/compare-<time>-<scenario>/ gets report.md
(medians, spread, the verdict) and chart.png (every round, so the noise is visible).

Usage: python loadtest/compare.py SCENARIO [--rounds 3] [--users 16] [--duration 20s]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import run as runner

SERVERS = ("gunicorn", "uwsgi")
ROOT = runner.ROOT


def switch_to(server: str) -> None:
    subprocess.run(["make", "--no-print-directory", "up", f"APP_SERVER={server}"], cwd=ROOT, check=True, timeout=600)


def order(round_number: int) -> tuple[str, ...]:
    return SERVERS if round_number % 2 == 0 else SERVERS[::-1]


def spread(values: list[float]) -> float:
    """(max - min) / median: how far apart the rounds of one server landed."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else float("inf")


def verdict(medians: dict[str, float], noise: float, rounds: int) -> str:
    fast, slow = sorted(SERVERS, key=lambda server: medians[server], reverse=True)
    gain = medians[fast] / medians[slow] - 1 if medians[slow] else float("inf")
    if rounds < 2:
        return (
            f"**No verdict**: {fast} is ahead by {gain:.0%}, but one round per server says nothing "
            "about run-to-run noise. Use --rounds 3 or more."
        )
    if gain > noise:
        return (
            f"**{fast} wins**: {gain:.0%} more requests per second than {slow} (median of rounds), "
            f"more than the run-to-run spread of {noise:.0%}."
        )
    return (
        f"**No clear winner**: {fast} is ahead by {gain:.0%}, within the run-to-run spread of "
        f"{noise:.0%}. More rounds or longer runs would be needed to call it."
    )


def report(scenario: str, summaries: dict[str, list[dict]], args: argparse.Namespace) -> str:
    rps = {server: [s["requests_per_second"] for s in summaries[server]] for server in SERVERS}
    medians = {server: statistics.median(rps[server]) for server in SERVERS}
    noise = max(spread(rps[server]) for server in SERVERS)
    lines = [
        f"# gunicorn vs uWSGI: {scenario}",
        "",
        f"Rounds per server: {args.rounds}, interleaved; {args.users} users, {args.duration:g} s each "
        f"(the first {summaries[SERVERS[0]][0]['warmup_s']:g} s of each left out as warm-up), against the "
        f"compose stack on {args.host}.",
        "",
        verdict(medians, noise, args.rounds),
        "",
        "| server | median req/s | spread (min to max) | median p50 | median p95 | median p99 "
        "| failures | valid rounds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for server in SERVERS:
        runs = summaries[server]

        def median_of(key: str, runs: list[dict] = runs) -> float:
            return statistics.median(run[key] for run in runs)

        lines.append(
            f"| {server} | {medians[server]:.0f} | {min(rps[server]):.0f} to {max(rps[server]):.0f} "
            f"({spread(rps[server]):.0%}) | {median_of('p50_ms'):.1f} ms | {median_of('p95_ms'):.1f} ms | "
            f"{median_of('p99_ms'):.1f} ms | {sum(run['failures'] for run in runs)} | "
            f"{sum(run['valid'] for run in runs)} of {len(runs)} |"
        )
    invalid = [run for server in SERVERS for run in summaries[server] if not run["valid"]]
    lines += [
        "",
        "Percentiles are exact (nearest rank over every request), not Locust's rounded buckets.",
        "A round is valid when Locust stayed under 90% of a core: otherwise the generator, not",
        "the server, was the limit. Generator CPU (max of 1 s samples) per round: "
        + ", ".join(
            f"{server} {run['generator']['cpu_max_percent']}%" for server in SERVERS for run in summaries[server]
        )
        + ".",
    ]
    if invalid:
        lines += [
            "",
            f"**{len(invalid)} round(s) invalid**: treat their figures as a floor, not a measurement.",
        ]
    lines += ["", "![every round](chart.png)", ""]
    lines += server_side_section(summaries)
    return "\n".join(lines)


def server_side_section(summaries: dict[str, list[dict]]) -> list[str]:
    """Each round's charts from Prometheus (make up MONITORING=1), or why there are none."""
    runs = sorted((run for server in SERVERS for run in summaries[server]), key=lambda run: run["round"])
    lines = ["## Server side", ""]
    if not any(run.get("server_side_chart") for run in runs):
        return [*lines, *sorted({run.get("server_side", "not recorded") for run in runs}), ""]
    lines += ["From Prometheus, a chart per round; docs/monitoring.md says what each panel shows.", ""]
    for run in runs:
        name = f"round {run['round']}, {'+'.join(run['servers'])}"
        shown = f"![{name}]({run['results']}/server-side.png)" if run.get("server_side_chart") else run["server_side"]
        lines += [f"{name}:", "", shown, ""]
    return lines


def chart(scenario: str, summaries: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    colours = {"gunicorn": "#2a7ab9", "uwsgi": "#d9822b"}
    for index, server in enumerate(SERVERS):
        runs = summaries[server]
        for axis, key in ((left, "requests_per_second"), (right, "p95_ms")):
            values = [run[key] for run in runs]
            axis.bar(index, statistics.median(values), color=colours[server], alpha=0.35, width=0.6)
            axis.scatter([index] * len(values), values, color=colours[server], zorder=3, label=server)
    left.set_title("requests per second (bar: median, dots: rounds)")
    right.set_title("p95 latency, ms (bar: median, dots: rounds)")
    for axis in (left, right):
        axis.set_xticks(range(len(SERVERS)), SERVERS)
        axis.set_ylim(bottom=0)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"gunicorn vs uWSGI behind nginx: {scenario}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("scenario")
    parse.add_argument("--rounds", type=int, default=3)
    parse.add_argument("--users", type=int, default=16)
    parse.add_argument("--duration", type=runner.seconds, default="20s")
    parse.add_argument("--results-dir", default=str(ROOT / "results"))
    parse.add_argument("--host", help="the stack's base URL; default https://localhost:$HTTPS_PORT")
    args = parse.parse_args(argv)
    runner.check_scenario(args.scenario)
    if args.rounds < 1:
        parse.error("--rounds must be at least 1")

    out = Path(args.results_dir) / f"compare-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{args.scenario}"
    out.mkdir(parents=True)
    host = args.host = args.host or f"https://localhost:{os.environ.get('HTTPS_PORT', '8443')}"
    summaries: dict[str, list[dict]] = {server: [] for server in SERVERS}
    for round_number in range(args.rounds):
        for server in order(round_number):
            print(f"\n== round {round_number + 1}/{args.rounds}: {server}", flush=True)
            switch_to(server)
            run_args = runner.parser().parse_args(
                [args.scenario, "--host", host, "--users", str(args.users),
                 "--duration", f"{args.duration:g}s", "--results-dir", str(out / "rounds")]
            )  # fmt: skip
            _, where = runner.run(run_args)
            if where is None:
                return 2
            summary = json.loads((where / "summary.json").read_text())
            if set(summary["servers"]) != {server}:
                print(f"expected only {server} to answer, saw {summary['servers']}", file=sys.stderr)
                return 2
            summary["round"], summary["results"] = round_number + 1, str(where.relative_to(out))
            summaries[server].append(summary)

    (out / "report.md").write_text(report(args.scenario, summaries, args))
    chart(args.scenario, summaries, out / "chart.png")
    (out / "summaries.json").write_text(json.dumps(summaries, indent=2) + "\n")
    print(f"\n{(out / 'report.md').read_text()}\nreport: {out / 'report.md'}\nchart:  {out / 'chart.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
