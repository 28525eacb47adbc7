"""The report's section 9: SQLite against PostgreSQL, persistent connections against psycopg's pool
(loadtest/bench/bench_databases.py). As the other report_sections_*: the Results in, paragraphs out.
"""

import math

from report_analysis import (
    DATABASES,
    DB_COMPARISONS,
    database_figures,
    failures,
    med,
    missing_reason,
    pool_verdict,
)
from report_markdown import Results, generator_note, heading, missing_note, na, para, rps_cell, table

SECTION = "databases"
# The endpoints in the order measured (bench_targets.DB_ENDPOINTS' names).
ENDPOINT_ORDER = ("db", "queries?n=20", "items")


def databases_section(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    md = [heading("databases")]
    labels = {r["label"] for r in runs if r["section"] == SECTION}
    endpoints = [e for e in ENDPOINT_ORDER if any(label.endswith(f" {e}") for label in labels)]
    if not endpoints:
        return [*md, na(missing_reason(missing, SECTION) or "not measured") + "\n"]
    md.append(para("databases"))
    header = ["server", "endpoint", *(f"{db} req/s" for db in DATABASES), "p99 ms (same order)"]
    header += [*(f"{name} (per round)" for name in DB_COMPARISONS), "gen cores (limit?)", "errors"]
    rows = []
    for endpoint in endpoints:
        for server, figures in database_figures(runs, endpoint).items():
            cells = figures["runs"]
            every = [r for rs in cells.values() for r in rs]
            reasons = {db: missing_reason(missing, SECTION, f"{server} {db} {endpoint}") for db in DATABASES}
            rps = [rps_cell(cells[db], reasons[db]) for db in DATABASES]
            p99 = " / ".join(f"{med(r['p99_ms'] for r in cells[db]):.1f}" if cells[db] else "n/a" for db in DATABASES)
            ratios = [ratio_cell(figures["ratios"].get(name)) for name in DB_COMPARISONS]
            rows.append([server, f"`{endpoint}`", *rps, p99, *ratios, generator_note(every), str(failures(every))])
    md += [table(header, rows), ""]
    verdict = pool_verdict(runs, endpoints)
    if verdict is not None:
        md.append(
            para(
                "databases_pool",
                median=verdict["median"],
                ahead=verdict["pool_ahead"],
                count=len(verdict["ratios"]),
                lowest=min(verdict["ratios"]),
                highest=max(verdict["ratios"]),
                verdict=pool_words(verdict["median"]),
            )
        )
    held = results.data.get("db_connections") or {}
    if held:
        listed = ", ".join(f"{service} {count}" for service, count in sorted(held.items()))
        md.append(para("databases_connections", listed=listed))
    md.extend(missing_note(missing, SECTION))
    return md


def ratio_cell(pairs: dict | None) -> str:
    if pairs is None:
        return "n/a"
    rounds = ", ".join(f"{x:.2f}" + ("*" if i in pairs["uneven_rounds"] else "") for i, x in enumerate(pairs["ratios"]))
    return f"{pairs['ratio']:.2f} ({rounds})" if not math.isnan(pairs["ratio"]) else "n/a"


def pool_words(median: float) -> str:
    """Which way of holding connections this run favours, within 2% counting as a tie."""
    if abs(median - 1) <= 0.02:
        return "a tie, within 2%"
    return "the pool is faster" if median > 1 else "persistent connections are faster"
