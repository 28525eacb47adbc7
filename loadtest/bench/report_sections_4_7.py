"""The report's sections 4-7 (ceilings, time to first byte, workers x threads, the load generator) and its end.

As in report_sections_1_3.py: each section is a function of the Results returning the report's paragraphs.
"""

import math

import report_charts as charts
from report_analysis import (
    GENERATOR_SATURATED,
    SERVERS,
    SWEEP_TARGET,
    TTFB_DELTA_TARGET_MS,
    by_label,
    by_section,
    failed_sweep_points,
    failures,
    med,
    missing_labels,
    missing_reason,
    nanmax,
    saturated_runs,
    sweep,
    ttfb_deltas,
)
from report_markdown import (
    Results,
    figure,
    generator_note,
    heading,
    machine_note,
    missing_note,
    na,
    para,
    rps_cell,
    share_text,
    table,
    text,
    verdict,
)


# --- 4. ceilings -----------------------------------------------------------------------------
def ceilings_section(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    md = [heading("ceilings"), para("ceilings")]
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
    md += [table(["target", "req/s", "p99 ms", "gen cores (limit?)", "machine cores", "errors"], rows), ""]
    md.extend(missing_note(missing, "ceilings"))
    for server in SERVERS:
        hello_d = med(r["rps"] for r in ceil.get(f"{server} hello direct", []))
        hello_n = med(r["rps"] for r in ceil.get(f"{server} hello nginx", []))
        django_d = med(r["rps"] for r in tax_groups.get(f"{server} direct", []))
        framework, proxy = share_text(django_d, hello_d), share_text(hello_n, hello_d)
        md.append(text("ceilings_taxes", server=server, framework=framework, proxy=proxy))
    md.append("")
    if figures:
        md.append(figure("ceilings", charts.chart_ceilings(figures, results.out_dir)))
    return md


# --- 5. time to first byte -------------------------------------------------------------------
def ttfb_section(results: Results) -> list[str]:
    ttfb, missing = results.data.get("ttfb"), results.missing
    md = [heading("ttfb")]
    if ttfb is None:
        return [*md, na(missing_reason(missing, "ttfb") or "not measured") + "\n"]
    deltas = ttfb_deltas(ttfb)
    md.append(para("ttfb", path=ttfb["path"], interval_ms=ttfb["interval_ms"], target=TTFB_DELTA_TARGET_MS))
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
    header = ["server", "direct p50/p90/p99 ms", "nginx p50/p90/p99 ms", "added at p50 ms", "requests", "target"]
    md += [table(header, rows), "\n" + para("ttfb_generator")]
    md.append(figure("ttfb", charts.chart_ttfb(deltas, results.out_dir)))
    return md


# --- 6. workers x threads --------------------------------------------------------------------
def sweep_section(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    md = [heading("sweep")]
    shipped_point = results.data.get("sweep_defaults")  # [APP_WORKERS, APP_THREADS], when .env had them
    defaults = (shipped_point[0], shipped_point[1]) if shipped_point else None
    if defaults is None:
        return [*md, na(missing_reason(missing, "sweep") or "not measured") + "\n"]
    result = sweep(runs, defaults)
    md.append(para("sweep", workers=defaults[0], threads=defaults[1], target=SWEEP_TARGET))
    for server in SERVERS:
        # Grid points whose every run failed: their cells say why.
        failed = failed_sweep_points(missing, server)
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
        md += [para("sweep_grid", server=server), table(["", *[f"{t} threads" for t in threads]], rows)]
        all_runs = [r for rs in s["points"].values() for r in rs]
        measured = not math.isnan(s["fraction"])
        fraction = (
            f"{s['fraction']:.0%}"
            if measured
            else na(failed.get(defaults, "the shipped point was not measured against the best"))
        )
        shipped = para(
            "sweep_shipped",
            workers=defaults[0],
            threads=defaults[1],
            fraction=fraction,
            best_workers=s["best"][0],
            best_threads=s["best"][1],
            ratios=", ".join(f"{x:.2f}" for x in s["ratios"]),
            verdict=verdict(s["met"]) if measured else "n/a",
            generator=generator_note(all_runs),
            errors=failures(all_runs),
        )
        md.append("\n" + shipped)
    md.extend(missing_note(missing, "sweep"))
    if result:
        md.append(figure("sweep", charts.chart_sweep(result, results.out_dir)))
    return md


# --- 7. the load generator -------------------------------------------------------------------
def generator_section(results: Results) -> list[str]:
    locust, missing = results.data.get("locust"), results.missing
    md = [heading("generator")]
    rows = []
    for section, rs in by_section(results.runs).items():
        rows.append(
            [
                section,
                str(len(rs)),
                f"{med(r['generator_cores'] for r in rs):.2f}",
                f"{nanmax(r['generator_cores'] for r in rs):.2f}",
                str(saturated_runs(rs)),
                machine_note(rs),
            ]
        )
    header = ["section", "wrk runs", "gen cores median", "gen cores max", "runs where wrk may be the limit"]
    md += [table([*header, "machine cores median"], rows), "\n" + para("generator")]
    if locust:
        md.append(locust_part(locust, missing))
    elif missing_reason(missing, "generator", "locust"):
        md.append(para("locust_missing", reason=na(missing_reason(missing, "generator", "locust"))))
    md.extend(missing_note(missing, "generator"))
    return md


def locust_part(locust: dict, missing: list[dict]) -> str:
    """Locust against wrk on the same target: how much of wrk's rate Locust reaches, and why."""
    figures = {
        "users": locust["users"],
        "seconds": locust["seconds"],
        "rps": locust["rps"],
        "failures": locust["failures"],
        "cores": locust["generator_cores"],
    }
    if math.isnan(locust["wrk_rps"]):
        reason = missing_reason(missing, "generator", "wrk (1 thread)") or "not measured"
        return para("locust_no_wrk", wrk=na(reason), **figures)
    ratio = locust["rps"] / locust["wrk_rps"] if locust["wrk_rps"] else math.nan
    if locust["generator_cores"] and locust["generator_cores"] >= GENERATOR_SATURATED:
        why = text("locust_saturated")
    else:
        why = text("locust_below", times=locust["generator_cores"] / max(locust["wrk_generator_cores"], 0.01))
    wrk = {"wrk_rps": locust["wrk_rps"], "wrk_cores": locust["wrk_generator_cores"]}
    return para("locust", ratio=ratio, verdict=why, **wrk, **figures)


# --- the end ---------------------------------------------------------------------------------
def reproduce(results: Results) -> list[str]:
    return [heading("reproduce"), para("reproduce")]
