"""The report's section 10: threads against gevent under each server (loadtest/bench/bench_models.py):
what each worker model costs ordinary requests, and how many open event streams each holds.
As the other report_sections_*: the Results in, paragraphs out.
"""

from report_analysis import SERVERS, failures, med, missing_reason, variant_figures
from report_markdown import Results, generator_note, heading, missing_note, na, para, rps_cell, table
from report_sections_9 import ratio_cell

SECTION = "models"
MODELS = ("threads", "gevent")
# The endpoints in the order measured (bench_targets.MODEL_ENDPOINTS).
ENDPOINT_ORDER = ("plaintext", "queries?n=20")
# The goal for the model the README recommends for streaming.
GOAL_STREAMS = 2000


def model_figures(runs: list[dict], endpoint: str) -> dict[str, dict]:
    """Per server, for one endpoint: each model's runs, and gevent/threads per round."""
    return variant_figures(runs, SECTION, "threads", "gevent", "{server} {variant} " + endpoint)


def streams_reason(missing: list[dict], server: str, model: str) -> str:
    """Why a capacity run has no figure: its own step's reason, else its whole section's."""
    own = [m["reason"] for m in missing if m["section"] == SECTION and m["label"] == f"{server} {model} streams"]
    return "; ".join(own) or missing_reason(missing, SECTION) or "not measured"


def models_section(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    md = [heading("models")]
    capacities = results.data.get("stream_capacity") or {}
    labels = {r["label"] for r in runs if r["section"] == SECTION}
    endpoints = [e for e in ENDPOINT_ORDER if any(label.endswith(f" {e}") for label in labels)]
    if not endpoints and not capacities:
        return [*md, na(missing_reason(missing, SECTION) or "not measured") + "\n"]
    md.append(para("models"))
    header = ["server", "endpoint", "threads req/s", "gevent req/s", "gevent/threads (per round)"]
    header += ["p99 ms (threads / gevent)", "gen cores (limit?)", "errors"]
    rows = []
    for endpoint in endpoints:
        for server, figures in model_figures(runs, endpoint).items():
            cells = figures["runs"]
            every = [r for rs in cells.values() for r in rs]
            reasons = {m: missing_reason(missing, SECTION, f"{server} {m} {endpoint}") for m in MODELS}
            rps = [rps_cell(cells[m], reasons[m]) for m in MODELS]
            p99 = " / ".join(f"{med(r['p99_ms'] for r in cells[m]):.1f}" if cells[m] else "n/a" for m in MODELS)
            ratio = ratio_cell(figures["ratio"])
            rows.append([server, f"`{endpoint}`", *rps, ratio, p99, generator_note(every), str(failures(every))])
    if rows:
        md += [table(header, rows), ""]
    md.append(para("models_streams"))
    header = ["server", "model", "open streams held", "at that step: latest event, probe p99"]
    header += ["the next step", "Locust CPU, max of a core", "cores used: app, nginx, Locust"]
    rows = [capacity_row(capacities, missing, server, model) for server in SERVERS for model in MODELS]
    md += [table(header, rows), ""]
    held = {name: found["capacity"] for name, found in capacities.items()}
    gevent = [held[f"{s} gevent"] for s in SERVERS if f"{s} gevent" in held]
    threads = [held[f"{s} threads"] for s in SERVERS if f"{s} threads" in held]
    if gevent and threads:
        met = "met" if min(gevent) >= GOAL_STREAMS else "not met"
        md.append(para("models_verdict", gevent=min(gevent), threads=max(threads), goal=GOAL_STREAMS, met=met))
    md.extend(missing_note(missing, SECTION))
    return md


def capacity_row(capacities: dict, missing: list[dict], server: str, model: str) -> list[str]:
    found = capacities.get(f"{server} {model}")
    if found is None:
        return [server, model, na(streams_reason(missing, server, model)), "", "", "", ""]
    steps = found["steps"]
    kept = next((s for s in steps if s["clients"] == found["capacity"]), None)
    broke = next((s for s in steps if not s["kept"]), None)
    at = f"{kept['max_lateness_ms']:.0f} ms, {kept['probe_p99_ms']:.1f} ms" if kept else "none kept both bounds"
    if broke is None:
        after = "none broke: the ramp's end"
    else:
        what = []
        if broke["late"]:
            what.append(f"{broke['late']} events late (latest {broke['max_lateness_ms']:.0f} ms)")
        if broke["failed"]:
            what.append(f"{broke['failed']} failed")
        if not broke["probe_p99_ms"] <= found["probe_p99_ms"]:
            what.append(f"probe p99 {broke['probe_p99_ms']:.0f} ms")
        after = f"{broke['clients']:,}: " + (", ".join(what) or "no reading")
    cores = found.get("cpu_cores") or {}
    services = found.get("services", {})
    used = ", ".join(f"{cores.get(services.get(k, k), float('nan')):.2f}" for k in ("app", "nginx", "loadgen"))
    used = used if cores else "n/a"
    generator = found["generator"].get("cpu_max_percent")
    return [
        server,
        model,
        f"{found['capacity']:,}",
        at,
        after,
        f"{generator}%" if generator is not None else "n/a",
        used,
    ]
