"""The report's section 11: what the app's metrics cost (loadtest/bench/bench_sections.py, metrics_cost):
each server straight, `/plaintext` flat out, METRICS_BIND as shipped against empty.
As the other report_sections_*: the Results in, paragraphs out.
"""

from report_analysis import SERVERS, failures, med, missing_reason, variant_figures
from report_markdown import Results, generator_note, heading, missing_note, na, para, rps_cell, table
from report_sections_9 import ratio_cell

SECTION = "metrics"
STATES = ("on", "off")


def metrics_section(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    md = [heading("metrics")]
    # Per server: the runs with metrics on and off, and on/off per round.
    figures = variant_figures(runs, SECTION, "off", "on", "{server} metrics {variant}")
    if not any(r["section"] == SECTION for r in runs):
        return [*md, na(missing_reason(missing, SECTION) or "not measured") + "\n"]
    md.append(para("metrics"))
    header = ["server", "metrics on req/s", "metrics off req/s", "on/off (per round)", "p99 ms (on / off)"]
    header += ["gen cores (limit?)", "errors"]
    rows = []
    for server, found in figures.items():
        cells = found["runs"]
        every = [r for rs in cells.values() for r in rs]
        reasons = {s: missing_reason(missing, SECTION, f"{server} metrics {s}") for s in STATES}
        rps = [rps_cell(cells[s], reasons[s]) for s in STATES]
        p99 = " / ".join(f"{med(r['p99_ms'] for r in cells[s]):.1f}" if cells[s] else "n/a" for s in STATES)
        rows.append([server, *rps, ratio_cell(found["ratio"]), p99, generator_note(every), str(failures(every))])
    md += [table(header, rows), ""]
    ratios = {server: found["ratio"]["ratio"] for server, found in figures.items() if found["ratio"]}
    if len(ratios) == len(SERVERS):
        md.append(para("metrics_verdict", **ratios))
    md.extend(missing_note(missing, SECTION))
    return md
