"""Turn bench.py's raw.json into report.md and PNG charts. No Docker here: the analysis is testable alone.

python loadtest/bench/report.py results/bench/raw.json   # re-render a report from saved data
"""

import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PROXY_TAX_TARGET = 0.95
TTFB_DELTA_TARGET_MS = 5.0
SWEEP_TARGET = 0.90
# A single-threaded wrk at this share of its core or more may itself be what limits the rate.
GENERATOR_SATURATED = 0.9
SERVERS = ("gunicorn", "uwsgi")
# Ours matches a peer when its peak is at least this share of the peer's...
PEER_MATCH = 0.95

PEER_DESCRIPTIONS = {
    "ours: gunicorn": "This stack's defaults: nginx (upstream keep-alive pool, buffering with a per-response "
    "opt-out for streams, gzip, JSON access log) in front of gunicorn gthread, APP_WORKERS x APP_THREADS "
    "from .env, keep-alive 75 s.",
    "ours: uwsgi": "The same nginx speaking the uwsgi protocol to uWSGI with this stack's uwsgi.ini "
    "(master, APP_WORKERS processes x APP_THREADS threads, thunder-lock, listen 1024, buffer-size 32k).",
    "peer: gunicorn defaults": "gunicorn started with nothing but the app and a bind address: one sync worker, "
    "2 s keep-alive (which nginx never uses: a bare proxy_pass speaks HTTP/1.0 and closes after every "
    "response), no access log. nginx is Debian's packaged nginx.conf with a tutorial's location block: "
    "include proxy_params; proxy_pass. Buffering and gzip are at Debian's defaults.",
    "peer: django template": "The gunicorn settings of nickjj/docker-django-example: cpu_count() x 2 sync "
    "workers (4 on this machine), one thread, timeout 120 s, an access-log line per request, behind the "
    "same Debian nginx and bare proxy_pass.",
    "peer: uWSGI defaults": "uWSGI as its Django tutorial first starts it, --socket and --module only: no "
    "master, one process, no threads, the 4 KiB header buffer and the backlog of 100; Debian's nginx with "
    "include uwsgi_params; uwsgi_pass.",
}


# --- small statistics ------------------------------------------------------------------------
def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of raw samples; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def med(values: Iterable[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}" if len(values) > 1 else "one run"


def by_label(runs: list[dict], section: str) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        if run["section"] == section:
            grouped[run["label"]].append(run)
    return grouped


def generator_note(runs: list[dict]) -> str:
    """The generator's CPU (median, in cores) and whether it may have been the bottleneck."""
    # Each reading stays paired with its own run's thread count: pair first, then leave out the unread.
    paired = [(r["generator_cores"], r["generator_threads"]) for r in runs]
    measured = [(cores, threads) for cores, threads in paired if not math.isnan(cores)]
    if not measured:
        return reading_missing(runs, "CPU")
    worst = max(cores / threads for cores, threads in measured)
    flag = "**yes**" if worst >= GENERATOR_SATURATED else "no"
    return f"{med(cores for cores, _ in measured):.2f} ({flag})"


def machine_note(runs: list[dict]) -> str:
    busy = med(r["machine_busy_cores"] for r in runs)
    return reading_missing(runs, "CPU") if math.isnan(busy) else f"{busy:.2f}"


def worker_shares(runs: list[dict]) -> str:
    """The busiest app worker's share of the workers' CPU in each run: 0.50 is an even split of two."""
    cells = []
    for r in runs:
        share = r.get("busiest_worker_share", math.nan)
        reason = r.get("missing", {}).get("worker CPU")
        cells.append(f"{share:.2f}" if not math.isnan(share) else na(reason) if reason else "-")
    return ", ".join(cells)


UNEVEN_SHARE = 0.75


def failures(runs: list[dict]) -> int:
    return sum(r["errors"] + r["non_2xx"] for r in runs)


def nanmax(values: Iterable[float]) -> float:
    return max((v for v in values if not math.isnan(v)), default=math.nan)


# --- what could not be measured --------------------------------------------------------------
# bench.py records every failed step in data["missing"] (section, label, round, what, reason), and
# the report marks the cell that step would have filled "n/a: <reason>" instead of a number.
# Steps with a section name of their own, inside a section bench.py runs under another name:
PARENT_SECTION = {"peers-paced": "peers", "streams": "peers"}


def one_line(reason: str, limit: int) -> str:
    """A reason on one line, at most limit characters: a long one keeps its start (what failed) and its
    end (the error's last words), the middle elided."""
    text = " ".join(reason.split()) or "no reason recorded"
    if len(text) > limit:
        head = limit // 2
        text = text[:head] + " [...] " + text[-(limit - head - 7) :]
    return text


def short(reason: str, limit: int = 160) -> str:
    """A reason cut to a table cell's length, with no | to break the table."""
    return one_line(reason, limit).replace("|", "\\|")


def na(reason: str) -> str:
    return f"n/a: {short(reason)}"


def missing_reason(missing: list[dict], section: str, label: str | None = None) -> str:
    """Why (section, label) has no figure: the reasons its own steps gave, else its whole section's; '' if none."""
    own = [
        m for m in missing if m["section"] == section and m["what"] in ("run", "probe") and label in (None, m["label"])
    ]
    if not own:
        parent = PARENT_SECTION.get(section, section)
        own = [m for m in missing if m["section"] == parent and m["what"] == "section"]
    return "; ".join(dict.fromkeys(m["reason"] for m in own))


def missing_labels(missing: list[dict], section: str) -> list[str]:
    """The labels of a section's runs or probes that failed: rows the report shows as n/a."""
    return list(dict.fromkeys(m["label"] for m in missing if m["section"] == section and m["what"] in ("run", "probe")))


def describe_missing(m: dict) -> str:
    where = " ".join(x for x in (f"`{m['label']}`" if m["label"] else "", f"r{m['round']}" if m["round"] else "") if x)
    return f"{m['section']} {where or '(the section itself)'}, {m['what']}: {short(m['reason'])}"


def missing_note(missing: list[dict], *sections: str) -> list[str]:
    """What a section could not measure, listed under it; nothing when it measured everything."""
    items = [describe_missing(m) for m in missing if m["section"] in sections]
    return ["\n**Not measured** (n/a above): " + "; ".join(items) + ".\n"] if items else []


def reading_missing(runs: list[dict], what: str) -> str:
    """The cell for a reading (CPU, worker CPU) no run has: n/a, with the reason a run recorded."""
    reason = next((r["missing"][what] for r in runs if what in r.get("missing", {})), "")
    return na(reason) if reason else "n/a"


def rps_cell(runs: list[dict], reason: str) -> str:
    """Median req/s and the range, or n/a and why there is no run."""
    if not runs:
        return na(reason or "not measured")
    rps = [r["rps"] for r in runs]
    return f"{med(rps):,.0f} ({spread(rps)})"


def share_text(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole and not math.isnan(part) and not math.isnan(whole) else "n/a (not measured)"


# --- analyses (the verdicts the tests check) -------------------------------------------------
# Section 1's pairs: name -> (direct label, through-nginx label, nginx service, app service).
# The first two are what the stack ships and what the target judges; the Unix-socket pair measures
# the fix the report proposes, and the peer shows what a naive stack's ratio looks like.
PROXY_PATHS = {
    "gunicorn": ("gunicorn direct", "gunicorn nginx", "nginx-gunicorn", "gunicorn"),
    "uwsgi": ("uwsgi direct", "uwsgi nginx", "nginx-uwsgi", "uwsgi"),
    "gunicorn, Unix socket": ("gunicorn direct", "gunicorn nginx-unix", "nginx-gunicorn-unix", "gunicorn"),
    "uwsgi, Unix socket": ("uwsgi direct", "uwsgi nginx-unix", "nginx-uwsgi-unix", "uwsgi"),
    "peer: gunicorn defaults": (
        "peer: gunicorn defaults direct",
        "peer: gunicorn defaults nginx",
        "peer-nginx",
        "peer-gunicorn-defaults",
    ),
}


def uneven(run: dict) -> bool:
    return run.get("busiest_worker_share", math.nan) >= UNEVEN_SHARE


def proxy_tax(runs: list[dict]) -> dict[str, dict]:
    """Per path: direct and nginx medians, and the median of the per-round nginx/direct ratios.

    A round where one app worker did most of the work on either side measures how gthread's
    connections landed on its workers, not what nginx costs: the verdict leaves such rounds out
    while any other round is left, and says so.
    """
    grouped = by_label(runs, "proxy-tax")
    result = {}
    for name, (direct_label, via_label, nginx_service, app_service) in PROXY_PATHS.items():
        direct_runs, via_runs = grouped.get(direct_label, []), grouped.get(via_label, [])
        direct = {r["round"]: r for r in direct_runs}
        via = {r["round"]: r for r in via_runs}
        paired = [k for k in sorted(direct) if k in via and direct[k]["rps"] > 0]
        if not paired:
            continue
        ratios = [via[k]["rps"] / direct[k]["rps"] for k in paired]
        uneven_rounds = [i for i, k in enumerate(paired) if uneven(direct[k]) or uneven(via[k])]
        even = [ratio for i, ratio in enumerate(ratios) if i not in uneven_rounds]
        ratio = med(even or ratios)
        result[name] = {
            "direct": med(r["rps"] for r in direct_runs),
            "nginx": med(r["rps"] for r in via_runs),
            "ratios": ratios,
            "uneven_rounds": uneven_rounds,
            "ratio": ratio,
            "met": ratio >= PROXY_TAX_TARGET,
            "shipped": name in SERVERS,
            "direct_label": direct_label,
            "direct_runs": direct_runs,
            "nginx_runs": via_runs,
            "nginx_service": nginx_service,
            "app_service": app_service,
        }
    return result


def ttfb_summary(timings: list[dict]) -> dict[str, float]:
    first = [t["first_byte_ms"] for t in timings if t["first_byte_ms"] is not None and t["status"] == 200]
    return {
        "p50": percentile(first, 50),
        "p90": percentile(first, 90),
        "p99": percentile(first, 99),
        "ok": len(first),
        "failed": len(timings) - len(first),
    }


def ttfb_deltas(ttfb: dict) -> dict[str, dict]:
    result = {}
    for server, urls in ttfb["urls"].items():
        d = ttfb_summary(ttfb["results"][urls["direct"]])
        n = ttfb_summary(ttfb["results"][urls["nginx"]])
        delta = n["p50"] - d["p50"]
        result[server] = {"direct": d, "nginx": n, "delta_p50": delta, "met": delta <= TTFB_DELTA_TARGET_MS}
    return result


def concurrent_summary(result: dict) -> dict[str, float]:
    streams = result["streams"]
    first = [s["first_byte_ms"] for s in streams if s["first_byte_ms"] is not None and s["status"] == 200]
    probes = [p["total_ms"] for p in result["probes"] if p["total_ms"] is not None and p["status"] == 200]
    return {
        "streams": len(streams),
        "streams_ok": len(first),
        "first_p50_ms": percentile(first, 50),
        "first_max_ms": max(first) if first else math.nan,
        "probe_count": len(probes),
        "probe_p50_ms": percentile(probes, 50),
        "probe_max_ms": max(probes) if probes else math.nan,
        "wall_ms": result["wall_ms"],
    }


def sweep(runs: list[dict], defaults: tuple[int, int]) -> dict[str, dict]:
    result = {}
    for server in SERVERS:
        points: dict[tuple[int, int], list[dict]] = defaultdict(list)
        for run in runs:
            if run["section"] == "sweep" and run["label"].startswith(f"{server} "):
                workers, threads = run["label"].split()[1].split("x")
                points[(int(workers), int(threads))].append(run)
        if not points:
            continue
        scores = {point: med(r["rps"] for r in rs) for point, rs in points.items()}
        # The grid's own winner (round 1), which the bench ran again alternately with the defaults.
        first = {point: r["rps"] for point, rs in points.items() for r in rs if r["round"] == 1}
        # Round 1 of every point failed (only confirmation rounds left): the best median stands in.
        best = max(first or scores, key=lambda p: (first or scores)[p])
        # As for the proxy tax: the defaults against the best round by round, then the median.
        theirs = {r["round"]: r["rps"] for r in points[best]}
        ratios = [r["rps"] / theirs[r["round"]] for r in points.get(defaults, []) if r["round"] in theirs]
        fraction = med(ratios) if ratios else math.nan
        result[server] = {
            "points": points,
            "scores": scores,
            "best": best,
            "defaults": defaults,
            "ratios": ratios,
            "fraction": fraction,
            "met": fraction >= SWEEP_TARGET,
        }
    return result


# --- the report ------------------------------------------------------------------------------
def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def write_report(data: dict, out_dir: Path) -> Path:
    runs = data["runs"]
    machine = data["machine"]
    settings = data["settings"]
    missing = data.get("missing", [])
    md: list[str] = []
    md.append("# Benchmark report\n")
    md.append(
        f"`make bench` ({data['profile']} profile), {machine['date']}, {data['elapsed_s'] / 60:.1f} minutes. "
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, kernel "
        f"{machine['kernel']}. Everything ran on this one machine: the load generator, nginx and the app "
        "servers share its cores, so the figures compare configurations with each other; they are not "
        "capacity figures for a bigger server.\n"
    )
    md.append("Versions: " + ", ".join(f"{k} `{v}`" for k, v in data["versions"].items()) + ".\n")
    if missing:
        md.append(
            f"**Incomplete run.** {len(missing)} measurement step(s) failed; the report is written from what was "
            "measured, and each cell a failed step would have filled says n/a and why:\n"
        )
        md.extend(f"- {describe_missing(m)}" for m in missing)
        md.append("")
    md.append(
        "**Method.** wrk (Debian's, written in C) runs in its own container on the compose networks, "
        f"{settings['connections']} connections, one thread, {settings['duration_s']} s per run after a "
        f"{settings['warmup_s']} s warm-up per target; {settings['rounds']} rounds, the targets taken in turns and "
        "in reverse order every other round. Figures are medians over rounds, with the range (min-max) as the "
        "spread. wrk is a closed loop: its latencies are those of a client that waits for each answer, not of "
        "a fixed arrival rate. CPU columns are cores used during the run, read from each container's cgroup: "
        "`gen` is the load generator, with **yes** where it ran at 90% or more of its thread's core and may "
        "itself have been the limit; `machine` is the whole host (Docker's own processes and the kernel's "
        "network work included). Containers not on the measured path are paused (`docker pause`) during each "
        "run, so their health checks stay out of the figures. Only the bench's own containers receive "
        "traffic.\n"
    )
    charts: list[str] = []

    # 1. proxy tax
    tax = proxy_tax(runs)
    md.append("## 1. Proxy tax\n")
    md.append(
        "Django `/plaintext`, the same server container and workers, straight to the app server and "
        "through nginx. The ratio is the median of each round's nginx/direct ratio. Straight to uWSGI means "
        "its HTTP socket, which in 2.0 closes after every response (wrk reconnects); nginx reaches uWSGI over "
        "the uwsgi protocol, which also opens a connection per request, while clients keep theirs alive to "
        f"nginx. Target: at least {PROXY_TAX_TARGET}, for the two paths the stack ships (nginx reaches the app "
        "server over TCP, by its compose service name). Two more paths are measured in the same rounds and "
        "are not shipped: the same nginx config and server containers talking over a Unix socket in a shared "
        "tmpfs volume (the fix proposed below), and gunicorn's defaults behind a bare `proxy_pass` (section "
        "3's first peer), to show what a naive stack's ratio means.\n"
    )
    rows = []
    for name, t in tax.items():
        direct_runs, nginx_runs = t["direct_runs"], t["nginx_runs"]
        rows.append(
            [
                name,
                f"{t['direct']:,.0f} ({spread([r['rps'] for r in direct_runs])})",
                f"{t['nginx']:,.0f} ({spread([r['rps'] for r in nginx_runs])})",
                f"{t['ratio']:.3f} ("
                + ", ".join(f"{x:.2f}" + ("*" if i in t["uneven_rounds"] else "") for i, x in enumerate(t["ratios"]))
                + ")",
                f"{med(r['p99_ms'] for r in direct_runs):.1f} / {med(r['p99_ms'] for r in nginx_runs):.1f}",
                f"{worker_shares(direct_runs)} / {worker_shares(nginx_runs)}",
                generator_note(direct_runs + nginx_runs),
                machine_note(direct_runs + nginx_runs),
                str(failures(direct_runs + nginx_runs)),
                verdict(t["met"]) if t["shipped"] else "(not shipped)",
            ]
        )
    tax_runs = by_label(runs, "proxy-tax")
    for name, (direct_label, via_label, _, _) in PROXY_PATHS.items():
        # A path with no pair of rounds: its cells say why, where a step recorded a reason.
        direct_reason = missing_reason(missing, "proxy-tax", direct_label)
        via_reason = missing_reason(missing, "proxy-tax", via_label)
        if name in tax or not (direct_reason or via_reason):
            continue
        direct_runs, via_runs = tax_runs.get(direct_label, []), tax_runs.get(via_label, [])
        reason = "; ".join(dict.fromkeys(x for x in (direct_reason, via_reason) if x))
        rows.append(
            [
                name,
                rps_cell(direct_runs, direct_reason),
                rps_cell(via_runs, via_reason),
                na(reason),
                *["-"] * 5,
                "n/a" if name in SERVERS else "(not shipped)",
            ]
        )
    md.append(
        table(
            [
                "path",
                "direct req/s",
                "through nginx req/s",
                "ratio (per round)",
                "p99 ms direct / nginx",
                "busiest worker share direct / nginx",
                "gen cores (limit?)",
                "machine cores",
                "errors",
                "target",
            ],
            rows,
        )
    )
    md.append("")
    md.extend(missing_note(missing, "proxy-tax"))
    md.append(proxy_tax_explanation(tax, runs))
    if tax:
        charts.append(chart_proxy_tax(tax, out_dir))
        md.append(f"\n![proxy tax]({charts[-1]})\n")

    # 2. servers
    md.append("## 2. gunicorn vs uWSGI\n")
    md.append(
        "Both through this stack's nginx, with the shipped settings. A difference counts only where the two "
        "ranges do not overlap.\n"
    )
    grouped = by_label(runs, "servers")
    labels = [*grouped, *missing_labels(missing, "servers")]
    endpoints = list(dict.fromkeys(label.split(" ", 1)[1] for label in labels))
    rows = []
    for endpoint in endpoints:
        g = grouped.get(f"gunicorn {endpoint}", [])
        u = grouped.get(f"uwsgi {endpoint}", [])
        if not g or not u:
            g_reason = missing_reason(missing, "servers", f"gunicorn {endpoint}")
            u_reason = missing_reason(missing, "servers", f"uwsgi {endpoint}")
            rows.append([endpoint, rps_cell(g, g_reason), rps_cell(u, u_reason), "n/a", "-", "n/a", "-", "-"])
            continue
        g_rps, u_rps = [r["rps"] for r in g], [r["rps"] for r in u]
        overlap = min(g_rps) <= max(u_rps) and min(u_rps) <= max(g_rps)
        winner = "within noise" if overlap or len(g) < 2 else ("gunicorn" if med(g_rps) > med(u_rps) else "uWSGI")
        rows.append(
            [
                endpoint,
                f"{med(g_rps):,.0f} ({spread(g_rps)})",
                f"{med(u_rps):,.0f} ({spread(u_rps)})",
                f"{med(u_rps) / med(g_rps):.2f}",
                f"{med(r['p99_ms'] for r in g):.1f} / {med(r['p99_ms'] for r in u):.1f}",
                winner,
                f"{generator_note(g)} / {generator_note(u)}",
                str(failures(g + u)),
            ]
        )
    md.append(
        table(
            [
                "endpoint",
                "gunicorn req/s",
                "uWSGI req/s",
                "uWSGI / gunicorn",
                "p99 ms g / u",
                "faster",
                "gen cores g / u",
                "errors",
            ],
            rows,
        )
    )
    md.extend(missing_note(missing, "servers"))
    if grouped:
        charts.append(chart_servers(grouped, endpoints, out_dir))
        md.append(f"\n![gunicorn vs uWSGI]({charts[-1]})\n")

    # 3. peers
    md.extend(peers_section(runs, data.get("concurrent_streams"), out_dir, charts, missing))

    # 4. ceilings
    md.append("## 4. Ceilings\n")
    md.append(
        "What each layer costs. `nginx return 200` is nginx answering by itself (its health location, no "
        "access log); `hello` is a framework-free WSGI app (loadtest/bench/hello_wsgi.py) on the same server "
        "container and config, direct and through the same nginx config; the Django rows repeat section 1.\n"
    )
    ceil = by_label(runs, "ceilings")
    tax_groups = by_label(runs, "proxy-tax")
    rows = []
    figures: list[tuple[str, float]] = []
    targets = [(label, "ceilings", label) for label in dict.fromkeys([*ceil, *missing_labels(missing, "ceilings")])]
    targets += [(f"{s} django {h}", "proxy-tax", f"{s} {h}") for s in SERVERS for h in ("direct", "nginx")]
    for label, section, run_label in targets:
        rs = (ceil if section == "ceilings" else tax_groups).get(run_label, [])
        if not rs:
            reason = missing_reason(missing, section, run_label)
            if reason:
                rows.append([label, na(reason), "-", "-", "-", "-"])
            continue
        figures.append((label, med(r["rps"] for r in rs)))
        rows.append(
            [
                label,
                rps_cell(rs, ""),
                f"{med(r['p99_ms'] for r in rs):.1f}",
                generator_note(rs),
                machine_note(rs),
                str(failures(rs)),
            ]
        )
    md.append(table(["target", "req/s", "p99 ms", "gen cores (limit?)", "machine cores", "errors"], rows))
    md.append("")
    md.extend(missing_note(missing, "ceilings"))
    for server in SERVERS:
        hello_d = med(r["rps"] for r in ceil.get(f"{server} hello direct", []))
        hello_n = med(r["rps"] for r in ceil.get(f"{server} hello nginx", []))
        django_d = med(r["rps"] for r in tax_groups.get(f"{server} direct", []))
        md.append(
            f"- {server}: Django's `/plaintext` runs at {share_text(django_d, hello_d)} of the hello-world's rate "
            f"straight to the server (the framework tax); for the hello-world, nginx keeps "
            f"{share_text(hello_n, hello_d)} of the direct rate (the proxy tax when the app costs almost nothing)."
        )
    md.append("")
    if figures:
        charts.append(chart_ceilings(figures, out_dir))
        md.append(f"\n![ceilings]({charts[-1]})\n")

    # 5. streaming
    md.extend(ttfb_section(data.get("ttfb"), out_dir, charts, missing))

    # 6. sweep
    defaults = data.get("sweep_defaults")
    md.extend(sweep_section(runs, tuple(defaults) if defaults else None, out_dir, charts, missing))

    # 7. generator
    md.extend(generator_section(runs, data.get("locust"), missing))

    md.append("## Reproduce\n")
    md.append(
        "`make bench` (about 12 minutes on 2 cores; `make bench BENCH_PROFILE=tiny` is the two-minute "
        "smoke version CI runs). Raw figures: `raw.json` beside this file; re-render with "
        "`.venv/bin/python loadtest/bench/report.py results/bench/raw.json`.\n"
    )
    path = out_dir / "report.md"
    path.write_text("\n".join(md))
    return path


def peer_matched(peak_ratio: float, ours_p99_ms: float, theirs_p99_ms: float) -> bool:
    """...and its p99 at the steady rate is within 10% or 1 ms of the peer's (noise at a few ms)."""
    return peak_ratio >= PEER_MATCH and ours_p99_ms <= max(theirs_p99_ms * 1.10, theirs_p99_ms + 1.0)


def cpu_per_request(runs: list[dict], nginx_service: str, app_service: str) -> dict[str, float]:
    """Median microseconds of CPU per request: generator, nginx, app server, and the rest of the machine."""

    def per_request(run: dict, cores: float) -> float:
        return cores / run["rps"] * 1e6 if run["rps"] else math.nan

    return {
        "generator": med(per_request(r, r["cpu"].get("loadgen", math.nan)) for r in runs),
        "nginx": med(per_request(r, r["cpu"].get(nginx_service, math.nan)) for r in runs),
        "app": med(per_request(r, r["cpu"].get(app_service, math.nan)) for r in runs),
        "other": med(per_request(r, r["machine_busy_cores"] - sum(r["cpu"].values())) for r in runs),
        "total": med(per_request(r, r["machine_busy_cores"]) for r in runs),
    }


def proxy_tax_explanation(tax: dict, runs: list[dict]) -> str:
    md = [
        "Where the CPU went, in microseconds per request (medians over every round): when the machine's "
        "cores are all busy, throughput is the cores divided by this total, so within a round the ratio is "
        "close to the direct total over the nginx total. `other` is the host outside the containers: Docker's "
        "log and network plumbing and the kernel's softirq work.\n"
    ]
    costs: dict[str, dict[str, dict[str, float]]] = {}
    rows = []
    for name, t in tax.items():
        costs[name] = {
            how: cpu_per_request(t[f"{how}_runs"], t["nginx_service"], t["app_service"]) for how in ("direct", "nginx")
        }
        # The Unix-socket paths share their direct runs with the TCP ones: one row for those.
        for how, label in (("direct", t["direct_label"]), ("nginx", f"{name}, through nginx")):
            if how == "direct" and any(row[0] == label for row in rows):
                continue
            cost = costs[name][how]
            rows.append(
                [
                    label,
                    f"{cost['generator']:.0f}",
                    f"{cost['nginx']:.0f}" if how == "nginx" else "-",
                    f"{cost['app']:.0f}",
                    f"{cost['other']:.0f}",
                    f"{cost['total']:.0f}",
                ]
            )
    md.append(table(["path", "generator", "nginx", "app server", "other", "total"], rows))
    md.append("")
    lopsided = [r for r in runs if r["section"] == "proxy-tax" and uneven(r)]
    if lopsided:
        md.append(
            f"In {len(lopsided)} of these runs ({', '.join(r['label'] + ' r' + str(r['round']) for r in lopsided)}) "
            f"one worker did {UNEVEN_SHARE:.0%} or more of the work. gunicorn's gthread worker keeps every "
            "kept-alive connection on the worker that accepted it, so when one worker happens to accept most of "
            "wrk's connections, its threads contend for one GIL while the other worker idles: fewer requests for "
            "more CPU each. Through nginx the upstream connections are recycled (`keepalive_requests`), which "
            "spreads them again at full load; straight to gunicorn nothing does. "
            "Ratios marked * come from such a round; the ratio in the table is the median of the other rounds "
            "where there are any, since a lopsided round measures where connections landed, not nginx.\n"
        )
    alone = by_label(runs, "ceilings").get("nginx return 200", [])
    nginx_alone_us = cpu_per_request(alone, "nginx-gunicorn", "gunicorn")["nginx"] if alone else math.nan
    for server in SERVERS:
        t = tax.get(server)
        if t is None:
            continue
        if t["met"]:
            md.append(f"- {server}: {t['ratio']:.3f}, target met.")
            continue
        direct, via = costs[server]["direct"], costs[server]["nginx"]
        unix = tax.get(f"{server}, Unix socket")
        measured_fix = (
            f"Measured here: the same nginx and {server} over a Unix socket kept {unix['ratio']:.3f} of the direct "
            f"rate, nginx spending {costs[f'{server}, Unix socket']['nginx']['nginx']:.0f} us per request instead "
            f"of {via['nginx']:.0f} us."
            if unix
            else "The Unix-socket path was not measured in this run."
        )
        md.append(
            f"- {server}: {t['ratio']:.3f}, **below the target of {PROXY_TAX_TARGET}**. nginx spends "
            f"{via['nginx']:.0f} us per proxied request, and the app server {via['app']:.0f} us against "
            f"{direct['app']:.0f} us direct: on a machine where the generator, nginx and the app share "
            "the cores, every microsecond nginx spends is one the app does not get. To reach "
            f"{PROXY_TAX_TARGET}, nginx would have to cost under "
            f"{(1 / PROXY_TAX_TARGET - 1) * direct['total']:.0f} us per request "
            f"here; its own `return 200` costs {nginx_alone_us:.0f} us (section 4), the rest being the "
            "second socket pair through the kernel (TCP through Docker's bridge in the shipped stack) and the "
            f"upstream bookkeeping. {measured_fix}"
        )
    peer = tax.get("peer: gunicorn defaults")
    if peer:
        ours = tax.get("gunicorn")
        md.append(
            f"- A naive stack's ratio is no better proxying: gunicorn's defaults behind a bare `proxy_pass` kept "
            f"{peer['ratio']:.3f} of its direct rate, but its direct rate ({peer['direct']:,.0f} req/s) is that of "
            "one sync worker that closes every connection, so nginx's cost is a smaller share of a slower whole. "
            + (
                f"Through nginx it served {peer['nginx']:,.0f} req/s against this stack's {ours['nginx']:,.0f}."
                if ours
                else ""
            )
        )
    unix_met = [s for s in SERVERS if tax.get(f"{s}, Unix socket", {}).get("met")]
    unix_missed = [s for s in SERVERS if f"{s}, Unix socket" in tax and s not in unix_met]
    md.append(
        "\nWhat would meet the target: cores for nginx that the app cannot use (nginx on its own host or "
        "cpuset, the usual production shape, where the app server is the scarce resource), and a Unix socket "
        "instead of TCP where nginx and the app server share a host"
        + (f", which met it here for {' and '.join(unix_met)}" if unix_met else "")
        + (f"{' but' if unix_met else ', which'} fell short for {' and '.join(unix_missed)}" if unix_missed else "")
        + ". The stack ships TCP because a Unix socket ties nginx to the app containers through a shared "
        "volume: `--scale` would leave every replica but the last to bind unreachable, and `make swap` and "
        "the DNS follower address the server by name."
    )
    return "\n".join(md)


def peers_section(
    runs: list[dict], streams: dict | None, out_dir: Path, charts: list[str], missing: list[dict]
) -> list[str]:
    md = ["## 3. The peers' configurations\n"]
    md.append("The same app and images, started with other well-known stacks' settings:\n")
    for name, text in PEER_DESCRIPTIONS.items():
        md.append(f"- **{name}**: {text}")
    md.append("")
    grouped = by_label(runs, "peers")
    paced = by_label(runs, "peers-paced")
    labels = [*grouped, *missing_labels(missing, "peers")]
    stacks = list(dict.fromkeys(label.rsplit(" ", 1)[0] for label in labels))
    endpoints = list(dict.fromkeys(label.rsplit(" ", 1)[1] for label in labels))
    paced_labels = [*paced, *missing_labels(missing, "peers-paced")]
    rates = {label.rsplit("@", 1)[0].rsplit(" ", 1)[1]: label.rsplit("@", 1)[1] for label in paced_labels}
    md.append(
        "Two loads per endpoint: wrk flat out (peak req/s, and p99 at that peak), and a steady rate below "
        "every stack's peak (each connection waits between requests), where p99 compares like with like: at "
        "peak, a stack that serves more requests also queues more of them. Ours (gunicorn, the default) "
        f"**matches or beats** a peer when its peak is at least {PEER_MATCH:.0%} of the peer's and its p99 at "
        "the steady rate is at most 10% or 1 ms above the peer's.\n"
    )
    rows = []
    ours = "ours: gunicorn"
    behind: list[str] = []
    for endpoint in endpoints:
        rate = rates.get(endpoint, "")
        our_runs = grouped.get(f"{ours} {endpoint}", [])
        our_paced = paced.get(f"{ours} {endpoint}@{rate}", [])
        for stack in stacks:
            rs = grouped.get(f"{stack} {endpoint}", [])
            steady = paced.get(f"{stack} {endpoint}@{rate}", [])
            peak_reason = missing_reason(missing, "peers", f"{stack} {endpoint}")
            steady_reason = missing_reason(missing, "peers-paced", f"{stack} {endpoint}@{rate}")
            if not rs and not peak_reason:
                continue
            rps = [r["rps"] for r in rs]
            compare = ""
            if stack.startswith("peer") and our_runs and our_paced and steady:
                r_ratio = med(r["rps"] for r in our_runs) / med(rps)
                ours_p99, theirs_p99 = med(r["p99_ms"] for r in our_paced), med(r["p99_ms"] for r in steady)
                ok = peer_matched(r_ratio, ours_p99, theirs_p99)
                verdict_text = "matches or beats" if ok else "**behind**"
                if not ok:
                    behind.append(f"{stack} on {endpoint}")
                compare = f"peak x{r_ratio:.2f}, steady p99 {ours_p99:.1f} vs {theirs_p99:.1f} ms: {verdict_text}"
            no_steady = na(steady_reason) if steady_reason else ""
            rows.append(
                [
                    endpoint,
                    stack,
                    rps_cell(rs, peak_reason),
                    f"{med(r['p99_ms'] for r in rs):.1f}" if rs else "-",
                    f"{med(r['rps'] for r in steady):,.0f}" if steady else no_steady,
                    f"{med(r['p99_ms'] for r in steady):.1f}" if steady else "-" if no_steady else "",
                    worker_shares(steady),
                    compare,
                    generator_note(rs + steady),
                    str(failures(rs + steady)),
                ]
            )
    md.append(
        table(
            [
                "endpoint",
                "stack",
                "peak req/s",
                "p99 ms at peak",
                "steady req/s",
                "p99 ms steady",
                "busiest worker share, steady",
                "ours (gunicorn) vs this peer",
                "gen cores (limit?)",
                "errors",
            ],
            rows,
        )
    )
    lopsided = [run for rs in paced.values() for run in rs if run["label"].startswith(ours) and uneven(run)]
    if behind:
        md.append(f"\nOurs is behind {', '.join(behind)}.")
    if behind and lopsided:
        md.append(
            f"In {len(lopsided)} of our steady-rate runs one gunicorn worker did {UNEVEN_SHARE:.0%} or more of "
            "the work (the busiest-worker column). At a steady, moderate rate nginx reuses its most recently "
            "freed upstream connection first, so the few connections in use stay on whichever gunicorn worker "
            "accepted them, and that worker's threads share one GIL while the other worker idles: such a round's "
            "p99 is that of one process, not two. uWSGI, which takes a new connection per request, and sync "
            "workers, one request at a time each, split the work evenly; at full load every pooled connection is "
            "in use and gunicorn's split evens out too (section 1's through-nginx shares)."
        )
    md.extend(missing_note(missing, "peers", "peers-paced"))
    failed_streams = [
        name for name in missing_labels(missing, "streams") if name not in (streams or {}).get("results", {})
    ]
    if streams:
        md.append(
            f"\n**Streaming under concurrency.** {streams['clients']} clients each open `{streams['path']}` at "
            "once, asking for gzip as browsers do, while one more client sends "
            "`/plaintext` requests one after another. Time to the first decoded chunk tells whether streams "
            "start at once or queue behind each other; the `/plaintext` latency tells whether the streams starve "
            "everyone else.\n"
        )
        rows = []
        for name, result in streams["results"].items():
            s = concurrent_summary(result)
            rows.append(
                [
                    name,
                    f"{s['streams_ok']}/{s['streams']}",
                    f"{s['first_p50_ms']:.0f}",
                    f"{s['first_max_ms']:.0f}",
                    f"{s['probe_count']}",
                    f"{s['probe_p50_ms']:.1f}",
                    f"{s['probe_max_ms']:.0f}",
                ]
            )
        for name in failed_streams:
            rows.append([name, na(missing_reason(missing, "streams", name)), *["-"] * 5])
        md.append(
            table(
                [
                    "stack",
                    "streams answered",
                    "first chunk p50 ms",
                    "first chunk max ms",
                    "/plaintext during",
                    "/plaintext p50 ms",
                    "/plaintext max ms",
                ],
                rows,
            )
        )
        all_streamed = not failed_streams and all(
            concurrent_summary(r)["streams_ok"] == streams["clients"] for r in streams["results"].values()
        )
        md.append(
            (
                "\nEvery stack here streams"
                if all_streamed
                else "\nNot every stack answered every stream (see the table)"
            )
            + ": the app marks its streams `X-Accel-Buffering: no`, which any nginx "
            "honours. What differs is how many streams run at once. A sync worker is held for a stream's whole "
            "length, so with one worker the streams run one after another and `/plaintext` waits behind them; "
            "gthread gives each stream a thread and the keep-alive pool keeps nginx's connections open.\n"
        )
        md.extend(missing_note(missing, "streams"))
    if grouped:
        charts.append(chart_peers(grouped, stacks, endpoints, out_dir))
        md.append(f"\n![peers]({charts[-1]})\n")
    return md


def ttfb_section(ttfb: dict | None, out_dir: Path, charts: list[str], missing: list[dict]) -> list[str]:
    md = ["## 5. Streaming: time to first byte\n"]
    if ttfb is None:
        return [*md, na(missing_reason(missing, "ttfb") or "not measured") + "\n"]
    deltas = ttfb_deltas(ttfb)
    md.append(
        f"`{ttfb['path']}`: two chunks {ttfb['interval_ms']} ms apart. One request at a time, direct and through "
        "nginx in turns, each on a new connection, asking for gzip. Timed from the request sent to the first "
        "byte of the decoded body (after de-chunking and gunzip), so a gzip header sent early does not count. "
        f"A buffering proxy would add about {ttfb['interval_ms']} ms. Target: nginx adds at most "
        f"{TTFB_DELTA_TARGET_MS:.0f} ms at p50.\n"
    )
    rows = []
    for server, d in deltas.items():
        rows.append(
            [
                server,
                f"{d['direct']['p50']:.2f} / {d['direct']['p90']:.2f} / {d['direct']['p99']:.2f}",
                f"{d['nginx']['p50']:.2f} / {d['nginx']['p90']:.2f} / {d['nginx']['p99']:.2f}",
                f"{d['delta_p50']:+.2f}",
                f"{d['direct']['ok'] + d['nginx']['ok']} ok, {d['direct']['failed'] + d['nginx']['failed']} failed",
                verdict(d["met"]),
            ]
        )
    md.append(
        table(
            ["server", "direct p50/p90/p99 ms", "nginx p50/p90/p99 ms", "added at p50 ms", "requests", "target"], rows
        )
    )
    md.append(
        "\nThe generator here is one Python client sending one request at a time; the same client times both "
        "paths, so its own overhead cancels out of the difference.\n"
    )
    charts.append(chart_ttfb(deltas, out_dir))
    md.append(f"\n![ttfb]({charts[-1]})\n")
    return md


def sweep_section(
    runs: list[dict], defaults: tuple[int, int] | None, out_dir: Path, charts: list[str], missing: list[dict]
) -> list[str]:
    md = ["## 6. Workers x threads\n"]
    if defaults is None:
        return [*md, na(missing_reason(missing, "sweep") or "not measured") + "\n"]
    result = sweep(runs, defaults)
    md.append(
        "Each point restarts the app server with APP_WORKERS and APP_THREADS set, then measures a mix of "
        "`/plaintext`, `/json`, `/db` and `/queries?n=20` through nginx. Each grid point runs once; where the "
        "grid's best is not the shipped point, both run again, alternately, and the verdict is the median of "
        "the per-round ratios (shipped / best), as for the proxy tax. Cells show each point's median. Target: the "
        f"shipped defaults ({defaults[0]} x {defaults[1]}) reach at least {SWEEP_TARGET:.0%} of the best.\n"
    )
    for server in SERVERS:
        # Grid points whose every run failed: their cells say why.
        failed: dict[tuple[int, int], str] = {}
        for m in missing:
            if m["section"] == "sweep" and m["what"] == "run" and m["label"].startswith(f"{server} "):
                w, t = m["label"].split()[1].split("x")
                point = (int(w), int(t))
                failed[point] = "; ".join(dict.fromkeys(x for x in (failed.get(point), m["reason"]) if x))
        s = result.get(server)
        if s is None:
            if failed or missing_reason(missing, "sweep"):
                md.append(f"**{server}**: {na('; '.join(failed.values()) or missing_reason(missing, 'sweep'))}\n")
            continue
        workers = sorted({p[0] for p in [*s["scores"], *failed]})
        threads = sorted({p[1] for p in [*s["scores"], *failed]})
        rows = []
        for w in workers:
            cells = []
            for t in threads:
                score = s["scores"].get((w, t))
                if score is None:
                    cells.append(na(failed[(w, t)]) if (w, t) in failed else "")
                    continue
                mark = " (best)" if (w, t) == s["best"] else ""
                mark += " (shipped)" if (w, t) == defaults else ""
                cells.append(f"{score:,.0f}{mark}")
            rows.append([f"{w} workers", *cells])
        md.append(f"**{server}** (req/s; threads across):\n")
        md.append(table(["", *[f"{t} threads" for t in threads]], rows))
        all_runs = [r for rs in s["points"].values() for r in rs]
        fraction = (
            f"{s['fraction']:.0%}"
            if not math.isnan(s["fraction"])
            else na(failed.get(defaults, "the shipped point was not measured against the best"))
        )
        md.append(
            f"\nShipped {defaults[0]} x {defaults[1]}: {fraction} of the grid's best ({s['best'][0]} x "
            f"{s['best'][1]}; per round: {', '.join(f'{x:.2f}' for x in s['ratios'])}): "
            f"{verdict(s['met']) if not math.isnan(s['fraction']) else 'n/a'}. "
            f"Generator: {generator_note(all_runs)} cores; errors: "
            f"{failures(all_runs)}.\n"
        )
    md.extend(missing_note(missing, "sweep"))
    if result:
        charts.append(chart_sweep(result, out_dir))
        md.append(f"\n![sweep]({charts[-1]})\n")
    return md


def generator_section(runs: list[dict], locust: dict | None, missing: list[dict]) -> list[str]:
    md = ["## 7. The load generator\n"]
    sections = defaultdict(list)
    for run in runs:
        sections[run["section"]].append(run)
    rows = []
    for section, rs in sections.items():
        saturated = sum(1 for r in rs if r["generator_cores"] / r["generator_threads"] >= GENERATOR_SATURATED)
        rows.append(
            [
                section,
                str(len(rs)),
                f"{med(r['generator_cores'] for r in rs):.2f}",
                f"{nanmax(r['generator_cores'] for r in rs):.2f}",
                str(saturated),
                machine_note(rs),
            ]
        )
    md.append(
        table(
            [
                "section",
                "wrk runs",
                "gen cores median",
                "gen cores max",
                "runs where wrk may be the limit",
                "machine cores median",
            ],
            rows,
        )
    )
    md.append(
        "\nwrk uses one thread, so it is the limit only when that thread nears a full core. Where it does not, "
        "the machine's cores went to nginx and the app server, which is the thing measured.\n"
    )
    if locust and math.isnan(locust["wrk_rps"]):
        reason = missing_reason(missing, "generator", "wrk (1 thread)") or "not measured"
        md.append(
            f"**Cross-check with Locust.** The same target (`/plaintext` through nginx to gunicorn) with "
            f"{locust['users']} Locust users for {locust['seconds']:.1f} s: {locust['rps']:,.0f} req/s, "
            f"{locust['failures']} failures, the generator using {locust['generator_cores']:.2f} cores. wrk's run "
            f"to compare with: {na(reason)}.\n"
        )
    elif locust:
        ratio = locust["rps"] / locust["wrk_rps"] if locust["wrk_rps"] else math.nan
        md.append(
            f"**Cross-check with Locust.** The same target (`/plaintext` through nginx to gunicorn) with "
            f"{locust['users']} Locust users (FastHttpUser, no wait, one process) for {locust['seconds']:.1f} s by "
            f"Locust's own clock: {locust['rps']:,.0f} req/s, {locust['failures']} failures, with the generator "
            f"using {locust['generator_cores']:.2f} cores (over the whole run, Python's start-up included); wrk "
            f"measured {locust['wrk_rps']:,.0f} req/s using {locust['wrk_generator_cores']:.2f} cores. Locust "
            f"reached {ratio:.0%} of wrk's figure. "
            + (
                "Locust was near a full core, so its figure is its own limit, not the stack's: this is why the "
                "peak figures above come from wrk."
                if locust["generator_cores"] and locust["generator_cores"] >= GENERATOR_SATURATED
                else "Locust was below a full core; the gap is the CPU it took from the servers on this shared "
                f"machine, {locust['generator_cores'] / max(locust['wrk_generator_cores'], 0.01):.1f} times wrk's."
            )
            + "\n"
        )
    elif missing_reason(missing, "generator", "locust"):
        md.append(f"**Cross-check with Locust.** {na(missing_reason(missing, 'generator', 'locust'))}\n")
    md.extend(missing_note(missing, "generator"))
    return md


# --- charts -------------------------------------------------------------------------------
def bar_with_range(ax: plt.Axes, x: float, values: list[float], width: float, label: str | None, color: str) -> None:
    m = med(values)
    ax.bar(x, m, width, label=label, color=color, yerr=[[m - min(values)], [max(values) - m]], capsize=3)


def save(fig: plt.Figure, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def chart_proxy_tax(tax: dict, out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, t in enumerate(tax.values()):
        for j, how in enumerate(("direct", "nginx")):
            values = [r["rps"] for r in t[f"{how}_runs"]]
            bar_with_range(ax, i + (j - 0.5) * 0.38, values, 0.36, how if i == 0 else None, ("#888", "#2a7")[j])
        ax.text(i, t["nginx"] * 1.04, f"x{t['ratio']:.2f}", ha="center")
    ax.set_xticks(range(len(tax)), [name.replace(", ", ",\n").replace(": ", ":\n") for name in tax], fontsize=8)
    ax.set_ylabel("req/s (median, range)")
    ax.set_title("Django /plaintext: direct vs through nginx")
    ax.legend()
    return save(fig, out_dir, "proxy_tax.png")


def chart_servers(grouped: dict, endpoints: list[str], out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, endpoint in enumerate(endpoints):
        for j, server in enumerate(SERVERS):
            values = [r["rps"] for r in grouped.get(f"{server} {endpoint}", [])]
            if values:
                bar_with_range(ax, i + (j - 0.5) * 0.38, values, 0.36, server if i == 0 else None, ("#37a", "#c73")[j])
    ax.set_xticks(range(len(endpoints)), endpoints)
    ax.set_ylabel("req/s through nginx")
    ax.set_title("gunicorn vs uWSGI (median, range)")
    ax.legend()
    return save(fig, out_dir, "servers.png")


def chart_peers(grouped: dict, stacks: list[str], endpoints: list[str], out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = ["#2a7", "#3a8", "#999", "#aaa", "#bbb"]
    width = 0.8 / max(1, len(stacks))
    for i, endpoint in enumerate(endpoints):
        for j, stack in enumerate(stacks):
            rs = grouped.get(f"{stack} {endpoint}", [])
            if not rs:
                continue
            x = i + (j - (len(stacks) - 1) / 2) * width
            bar_with_range(axes[0], x, [r["rps"] for r in rs], width, stack if i == 0 else None, colors[j % 5])
            axes[1].bar(x, med(r["p99_ms"] for r in rs), width, color=colors[j % 5])
    for ax, title in zip(axes, ("req/s (median, range)", "p99 ms (median)"), strict=True):
        ax.set_xticks(range(len(endpoints)), endpoints)
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    return save(fig, out_dir, "peers.png")


def chart_ceilings(figures: list[tuple[str, float]], out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.barh([label for label, _ in figures], [value for _, value in figures], color="#37a")
    ax.set_xscale("log")
    ax.set_xlabel("req/s (median, log scale)")
    ax.set_title("Ceilings: nginx alone, WSGI hello-world, Django")
    return save(fig, out_dir, "ceilings.png")


def chart_ttfb(deltas: dict, out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, d in enumerate(deltas.values()):
        ax.bar(i - 0.19, d["direct"]["p50"], 0.36, color="#888", label="direct" if i == 0 else None)
        ax.bar(i + 0.19, d["nginx"]["p50"], 0.36, color="#2a7", label="nginx" if i == 0 else None)
    ax.set_xticks(range(len(deltas)), list(deltas))
    ax.set_ylabel("ms to first body byte (p50)")
    ax.set_title("Streaming: time to first byte")
    ax.legend()
    return save(fig, out_dir, "ttfb.png")


def chart_sweep(result: dict, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, max(1, len(result)), figsize=(5 * max(1, len(result)), 3.6), squeeze=False)
    for ax, (server, s) in zip(axes[0], result.items(), strict=True):
        workers = sorted({p[0] for p in s["scores"]})
        threads = sorted({p[1] for p in s["scores"]})
        grid = [[s["scores"].get((w, t), math.nan) for t in threads] for w in workers]
        ax.imshow(grid, cmap="Greens", aspect="auto")
        for wi, row in enumerate(grid):
            for ti, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(ti, wi, f"{value:,.0f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(threads)), [f"{t} thr" for t in threads])
        ax.set_yticks(range(len(workers)), [f"{w} wrk" for w in workers])
        ax.set_title(f"{server}: req/s, mixed endpoints")
    return save(fig, out_dir, "sweep.png")


def main() -> None:
    raw = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/bench/raw.json")
    print(write_report(json.loads(raw.read_text()), raw.parent))


if __name__ == "__main__":
    main()
