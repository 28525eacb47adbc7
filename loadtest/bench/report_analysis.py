"""The bench report's figures and verdicts, computed from raw.json: no Markdown and no charts here.

The proxy tax, the workers x threads sweep, the time-to-first-byte deltas, the peer comparison, the
lopsided-worker rule, and the bookkeeping of an incomplete run (which cell a failed step leaves empty,
and why). These are the pure functions tests/test_bench.py checks on known figures.
"""

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable

from bench_targets import SEPARATE_CORES
from percentiles import percentile

PROXY_TAX_TARGET = 0.95
TTFB_DELTA_TARGET_MS = 5.0
SWEEP_TARGET = 0.90
# A single-threaded wrk at this share of its core or more may itself be what limits the rate.
GENERATOR_SATURATED = 0.9
SERVERS = ("gunicorn", "uwsgi")
# Ours matches a peer when its peak is at least this share of the peer's...
PEER_MATCH = 0.95
# A run where the busiest app worker did this share of the workers' CPU or more is lopsided.
UNEVEN_SHARE = 0.75

# Section 1's pairs: name -> (direct label, through-nginx label, nginx service, app service).
# The first two are what the stack ships (Unix sockets) and what the target judges; the TCP pair is
# the multi-host transport (APP_TRANSPORT=tcp), and the peer shows what a naive stack's ratio looks like.
PROXY_PATHS = {
    "gunicorn": ("gunicorn direct", "gunicorn nginx", "nginx-gunicorn", "gunicorn"),
    "uwsgi": ("uwsgi direct", "uwsgi nginx", "nginx-uwsgi", "uwsgi"),
    "gunicorn, TCP": ("gunicorn direct", "gunicorn nginx-tcp", "nginx-gunicorn-tcp", "gunicorn"),
    "uwsgi, TCP": ("uwsgi direct", "uwsgi nginx-tcp", "nginx-uwsgi-tcp", "uwsgi"),
    # The shipped pairs again with the app server and nginx on separate cores (bench_sections.py).
    **{
        f"{s}{SEPARATE_CORES}": (f"{s}{SEPARATE_CORES} direct", f"{s}{SEPARATE_CORES} nginx", f"nginx-{s}", s)
        for s in SERVERS
    },
    "peer: gunicorn defaults": (
        "peer: gunicorn defaults direct",
        "peer: gunicorn defaults nginx",
        "peer-nginx",
        "peer-gunicorn-defaults",
    ),
}
# The stack the peers are compared with.
OURS = "ours: gunicorn"


# --- small statistics ------------------------------------------------------------------------
def med(values: Iterable[float]) -> float:
    """The median of the values that were measured (NaN left out); NaN when none were."""
    measured = [v for v in values if not math.isnan(v)]
    return statistics.median(measured) if measured else math.nan


def nanmax(values: Iterable[float]) -> float:
    return max((v for v in values if not math.isnan(v)), default=math.nan)


def by_label(runs: list[dict], section: str) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        if run["section"] == section:
            grouped[run["label"]].append(run)
    return grouped


def by_section(runs: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        grouped[run["section"]].append(run)
    return grouped


def failures(runs: list[dict]) -> int:
    return sum(r["errors"] + r["non_2xx"] for r in runs)


def generator_saturated(cores: float, threads: int) -> bool:
    """wrk's threads were busy enough that the generator, not the server, may have set the pace."""
    return cores / threads >= GENERATOR_SATURATED


def generator_limited(readings: list[tuple[float, int]]) -> bool:
    """Any of these (cores, threads) readings says the generator may have been the limit."""
    return any(generator_saturated(cores, threads) for cores, threads in readings)


def saturated_runs(runs: list[dict]) -> int:
    return sum(1 for r in runs if generator_saturated(r["generator_cores"], r["generator_threads"]))


# --- the lopsided-worker rule ----------------------------------------------------------------
def uneven(run: dict) -> bool:
    """One app worker did most of the run's work (gthread keeps a connection on the worker that accepted it)."""
    return run.get("busiest_worker_share", math.nan) >= UNEVEN_SHARE


def paired_ratios(base_runs: list[dict], other_runs: list[dict], judge_split: bool = True) -> dict | None:
    """other/base req/s per round where both were measured, and their median; None when no round has both.

    A round where one app worker did most of the work on either side measures how gthread's connections
    landed on its workers, not the difference being measured: the median leaves such rounds out while
    any other round is left, and says which they were (uneven_rounds, indices into ratios). Not with
    judge_split False: an app server on one core, whose workers share it whichever took the connections.
    """
    base = {r["round"]: r for r in base_runs}
    other = {r["round"]: r for r in other_runs}
    paired = [k for k in sorted(base) if k in other and base[k]["rps"] > 0]
    if not paired:
        return None
    ratios = [other[k]["rps"] / base[k]["rps"] for k in paired]
    uneven_rounds = [i for i, k in enumerate(paired) if judge_split and (uneven(base[k]) or uneven(other[k]))]
    even = [ratio for i, ratio in enumerate(ratios) if i not in uneven_rounds]
    return {"ratios": ratios, "uneven_rounds": uneven_rounds, "ratio": med(even or ratios)}


def variant_figures(runs: list[dict], section: str, base: str, other: str, label: str) -> dict[str, dict]:
    """Per server: the runs of two variants of one setting, and other/base per round (paired_ratios).
    label is a run's label with {server} and {variant} in it."""
    grouped = by_label(runs, section)
    result = {}
    for server in SERVERS:
        cells = {v: grouped.get(label.format(server=server, variant=v), []) for v in (base, other)}
        result[server] = {"runs": cells, "ratio": paired_ratios(cells[base], cells[other])}
    return result


def lopsided_runs(runs: list[dict], section: str, label_prefix: str = "") -> list[dict]:
    """A section's lopsided runs, those whose label starts with label_prefix."""
    return [r for r in runs if r["section"] == section and r["label"].startswith(label_prefix) and uneven(r)]


# --- what could not be measured --------------------------------------------------------------
# bench.py records every failed step in data["missing"] (section, label, round, what, reason), and
# the report marks the cell that step would have filled "n/a: <reason>" instead of a number.
# Steps with a section name of their own, inside a section bench.py runs under another name:
PARENT_SECTION = {"peers-paced": "peers", "streams": "peers"}


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


def failed_sweep_points(missing: list[dict], server: str) -> dict[tuple[int, int], str]:
    """Grid points (workers, threads) of a server with a failed run, and why: their cells say so."""
    failed: dict[tuple[int, int], str] = {}
    for m in missing:
        if m["section"] == "sweep" and m["what"] == "run" and m["label"].startswith(f"{server} "):
            w, t = m["label"].split()[1].split("x")
            point = (int(w), int(t))
            failed[point] = "; ".join(dict.fromkeys(x for x in (failed.get(point), m["reason"]) if x))
    return failed


# --- 1. the proxy tax ------------------------------------------------------------------------
def app_on_one_core(separate_app_cpus: str) -> bool:
    """Whether the separate-cores pairs held the app server to one core: "0" is one; "0-1" or "0,2" more."""
    return separate_app_cpus.isdigit()


def proxy_tax(runs: list[dict], separate_app_cpus: str = "") -> dict[str, dict]:
    """Per path: direct and nginx medians, and the median of the per-round nginx/direct ratios
    (paired_ratios: lopsided rounds left out of the verdict while any other round is left, except on
    separate cores when the app server had one core there: separate_app_cpus, raw.json's separate_cores)."""
    one_core = app_on_one_core(separate_app_cpus)
    grouped = by_label(runs, "proxy-tax")
    result = {}
    for name, (direct_label, via_label, nginx_service, app_service) in PROXY_PATHS.items():
        direct_runs, via_runs = grouped.get(direct_label, []), grouped.get(via_label, [])
        pairs = paired_ratios(direct_runs, via_runs, judge_split=not (one_core and name.endswith(SEPARATE_CORES)))
        if pairs is None:
            continue
        result[name] = {
            "direct": med(r["rps"] for r in direct_runs),
            "nginx": med(r["rps"] for r in via_runs),
            **pairs,
            "met": pairs["ratio"] >= PROXY_TAX_TARGET,
            "shipped": name in SERVERS,
            "direct_label": direct_label,
            "direct_runs": direct_runs,
            "nginx_runs": via_runs,
            "nginx_service": nginx_service,
            "app_service": app_service,
        }
    return result


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


def proxy_costs(tax: dict[str, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per path, per side ("direct", "nginx"): where the CPU went, in microseconds per request."""
    return {
        name: {
            how: cpu_per_request(t[f"{how}_runs"], t["nginx_service"], t["app_service"]) for how in ("direct", "nginx")
        }
        for name, t in tax.items()
    }


def nginx_alone_us(runs: list[dict]) -> float:
    """nginx's CPU per request when it answers by itself (`return 200`, section 4); NaN if not measured."""
    alone = by_label(runs, "ceilings").get("nginx return 200", [])
    return cpu_per_request(alone, "nginx-gunicorn", "gunicorn")["nginx"] if alone else math.nan


def nginx_budget_us(direct_total_us: float) -> float:
    """The most nginx may cost per request for the proxied path to keep PROXY_TAX_TARGET of the direct rate."""
    return (1 / PROXY_TAX_TARGET - 1) * direct_total_us


# --- 2. gunicorn vs uWSGI --------------------------------------------------------------------
def faster(gunicorn_rps: list[float], uwsgi_rps: list[float]) -> str:
    """The faster server, or "within noise" when the two ranges overlap (or there is one round only)."""
    overlap = min(gunicorn_rps) <= max(uwsgi_rps) and min(uwsgi_rps) <= max(gunicorn_rps)
    if overlap or len(gunicorn_rps) < 2:
        return "within noise"
    return "gunicorn" if med(gunicorn_rps) > med(uwsgi_rps) else "uWSGI"


# --- 3. the peers ----------------------------------------------------------------------------
def peer_matched(peak_ratio: float, ours_p99_ms: float, theirs_p99_ms: float) -> bool:
    """...and its p99 at the steady rate is within 10% or 1 ms of the peer's (noise at a few ms)."""
    return peak_ratio >= PEER_MATCH and ours_p99_ms <= max(theirs_p99_ms * 1.10, theirs_p99_ms + 1.0)


def concurrent_summary(result: dict) -> dict[str, float]:
    streams = result["streams"]
    first = [s["first_byte_ms"] for s in streams if s["first_byte_ms"] is not None and s["status"] == 200]
    probes = [p["total_ms"] for p in result["probes"] if p["total_ms"] is not None and p["status"] == 200]
    return {
        "streams": len(streams),
        "streams_ok": len(first),
        "first_p50_ms": percentile(first, 0.50),
        "first_max_ms": max(first) if first else math.nan,
        "probe_count": len(probes),
        "probe_p50_ms": percentile(probes, 0.50),
        "probe_max_ms": max(probes) if probes else math.nan,
        "wall_ms": result["wall_ms"],
    }


# --- 5. time to first byte -------------------------------------------------------------------
def ttfb_summary(timings: list[dict]) -> dict[str, float]:
    first = [t["first_byte_ms"] for t in timings if t["first_byte_ms"] is not None and t["status"] == 200]
    return {
        "p50": percentile(first, 0.50),
        "p90": percentile(first, 0.90),
        "p99": percentile(first, 0.99),
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


# --- 6. workers x threads --------------------------------------------------------------------
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


# --- 8. HTTPS --------------------------------------------------------------------------------
# The nginx container in front of each server, whose CPU section 8's /plaintext pairs compare.
NGINX_OF = {"gunicorn": "nginx-gunicorn", "uwsgi": "nginx-uwsgi"}
# The wrk run beside the handshakes: the same request on a new plain TCP connection each time.
NO_TLS_LABEL = "no TLS: new TCP connection"
HTTPS_SESSIONS = ("full", "resumed")
PAGE_PROTOCOLS = ("HTTP/2", "HTTP/1.1")


def https_plaintext(runs: list[dict]) -> dict[str, dict]:
    """Per server: plain HTTP and HTTPS medians through the same nginx, the per-round https/http ratios
    (paired_ratios), and each side's CPU per request."""
    grouped = by_label(runs, "https")
    result = {}
    for server in SERVERS:
        http_runs, https_runs = grouped.get(f"{server} http", []), grouped.get(f"{server} https", [])
        pairs = paired_ratios(http_runs, https_runs)
        if pairs is None:
            continue
        result[server] = {
            "http": med(r["rps"] for r in http_runs),
            "https": med(r["rps"] for r in https_runs),
            "http_runs": http_runs,
            "https_runs": https_runs,
            **pairs,
            "cost": {
                how: cpu_per_request(rs, NGINX_OF[server], server)
                for how, rs in (("http", http_runs), ("https", https_runs))
            },
        }
    return result


def per_event_us(cpu_s: dict[str, float], service: str, events: int) -> float:
    """A container's CPU over a measurement, in microseconds per event (handshake, request); NaN if unread."""
    return cpu_s.get(service, math.nan) / events * 1e6 if events else math.nan


def handshakes(data: dict) -> dict[str, dict]:
    """Per kind of handshake (label, in the order measured): medians over rounds, and the resumption check."""
    measured = data.get("https_handshakes") or {}
    service = measured.get("nginx_service", "")
    grouped: dict[str, list[dict]] = defaultdict(list)
    for result in measured.get("results", []):
        grouped[result["label"]].append(result)
    rows = {}
    for label, rs in grouped.items():
        count, resumed = sum(r["handshakes"] for r in rs), sum(r["resumed"] for r in rs)
        reuse = rs[0]["session"] == "reuse"
        rows[label] = {
            "rates": [r["rate"] for r in rs],
            "rate": med(r["rate"] for r in rs),
            "handshakes": count,
            "resumed": resumed,
            # -reuse must resume every connection, -new none: otherwise the row is not what it says.
            "as_labelled": resumed == count if reuse else resumed == 0,
            "nginx_us": med(per_event_us(r["cpu_s"], service, r["handshakes"]) for r in rs),
            "generator_cores": med(r["cpu_s"].get("loadgen", math.nan) / r["window_s"] for r in rs),
            "machine_cores": med(r["machine_busy_s"] / r["window_s"] for r in rs),
            "group": rs[0]["group"],
            "cipher": rs[0]["cipher"],
            "runs": rs,
        }
    return rows


def page_loads(data: dict) -> dict[str, dict]:
    """Per protocol: the page's set fetched over HTTP/2 or HTTP/1.1, medians over rounds."""
    page = data.get("https_page") or {}
    service, sets = page.get("nginx_service", ""), page.get("sets", 1)
    grouped: dict[str, list[dict]] = defaultdict(list)
    for result in page.get("results", []):
        grouped[result["protocol"]].append(result)
    return {
        protocol: {
            "rps": med(r["rps"] for r in rs),
            "rps_runs": [r["rps"] for r in rs],
            "set_ms": med(r["seconds"] * 1000 / sets for r in rs),
            "nginx_us": med(per_event_us(r["cpu_s"], service, r["requests"]) for r in rs),
            "generator_cores": med(r["cpu_s"].get("loadgen", math.nan) / r["window_s"] for r in rs),
            "header_bytes": med(r["header_bytes"] / r["requests"] for r in rs),
            "requests": sum(r["requests"] for r in rs),
            "failed": sum(r["requests"] - r["succeeded"] for r in rs),
            "connections": rs[0]["connections"],
            "streams": rs[0]["streams"],
            "runs": rs,
        }
        for protocol, rs in grouped.items()
    }


def page_ratio(data: dict) -> dict | None:
    """HTTP/2's req/s over HTTP/1.1's, per round and the median (paired_ratios); None without a pair."""
    results = (data.get("https_page") or {}).get("results", [])
    by_protocol = {p: [r for r in results if r["protocol"] == p] for p in PAGE_PROTOCOLS}
    return paired_ratios(by_protocol["HTTP/1.1"], by_protocol["HTTP/2"])


# --- 9. Databases ----------------------------------------------------------------------------
DATABASES = ("sqlite", "postgres persistent", "postgres pool")
# Section 9's two comparisons: PostgreSQL (as shipped) against SQLite, and the pool against persistent.
DB_COMPARISONS = {"postgres/sqlite": ("sqlite", "postgres persistent"), "pool/persistent": DATABASES[1:]}


def database_figures(runs: list[dict], endpoint: str) -> dict[str, dict]:
    """Per server, for one endpoint: each database setting's runs, and each comparison's per-round
    ratios (paired_ratios) where both sides were measured."""
    grouped = by_label(runs, "databases")
    result = {}
    for server in SERVERS:
        cells = {db: grouped.get(f"{server} {db} {endpoint}", []) for db in DATABASES}
        ratios = {}
        for name, (base, other) in DB_COMPARISONS.items():
            pairs = paired_ratios(cells[base], cells[other])
            if pairs is not None:
                ratios[name] = pairs
        result[server] = {"runs": cells, "ratios": ratios}
    return result


def pool_verdict(runs: list[dict], endpoints: list[str]) -> dict | None:
    """Every server and endpoint's pool/persistent ratio, their median, and how many favour the pool;
    None when none was measured."""
    ratios = [
        figures["ratios"]["pool/persistent"]["ratio"]
        for endpoint in endpoints
        for figures in database_figures(runs, endpoint).values()
        if "pool/persistent" in figures["ratios"]
    ]
    if not ratios:
        return None
    return {"ratios": ratios, "median": med(ratios), "pool_ahead": sum(1 for r in ratios if r > 1)}
