"""The report's section 12: nginx's per-request work, one change at a time (bench_nginx_cost.py).
As the other report_sections_*: the Results in, paragraphs out.
"""

import math

from bench_nginx_cost import ALL, CHANGES, NGINX, SECTION
from report_analysis import by_label, failures, med, missing_reason
from report_markdown import Results, generator_note, heading, missing_note, na, para, table


def nginx_us(run: dict) -> float:
    """nginx's CPU per request in the run, microseconds."""
    return run["cpu"].get(NGINX, math.nan) / run["rps"] * 1e6 if run["rps"] else math.nan


def change_figures(runs: list[dict], name: str) -> dict | None:
    """A change's runs paired by round: nginx's µs per request on each side, the per-round
    differences (changed minus shipped) and req/s ratios (changed over shipped)."""
    grouped = by_label(runs, SECTION)
    shipped = {r["round"]: r for r in grouped.get(f"{name} shipped", [])}
    changed = {r["round"]: r for r in grouped.get(f"{name} changed", [])}
    rounds = sorted(set(shipped) & set(changed))
    if not rounds:
        return None
    differences = [nginx_us(changed[n]) - nginx_us(shipped[n]) for n in rounds]
    return {
        "shipped_us": med(nginx_us(shipped[n]) for n in rounds),
        "changed_us": med(nginx_us(changed[n]) for n in rounds),
        "differences": differences,
        "difference": med(differences),
        "ratio": med(changed[n]["rps"] / shipped[n]["rps"] for n in rounds if shipped[n]["rps"]),
        # Every round moved the same way: the change's effect stood out of the noise between rounds.
        "clear": len(rounds) > 1 and (all(d < 0 for d in differences) or all(d > 0 for d in differences)),
        "runs": [*shipped.values(), *changed.values()],
    }


def nginx_cost_section(results: Results) -> list[str]:
    runs, missing = results.runs, results.missing
    md = [heading("nginx_cost")]
    if not any(r["section"] == SECTION for r in runs):
        return [*md, na(missing_reason(missing, SECTION) or "not measured") + "\n"]
    md.append(para("nginx_cost"))
    header = ["change", "rounds", "nginx µs per request, shipped / changed", "difference per round (µs)"]
    header += ["req/s, changed / shipped", "out of the noise?", "gen cores (limit?)", "errors"]
    rows, clear = [], []
    for name in CHANGES:
        found = change_figures(runs, name)
        if found is None:
            rows.append([name, "0", na(missing_reason(missing, SECTION, f"{name} changed") or "not measured")])
            continue
        each = ", ".join(f"{d:+.0f}" for d in found["differences"])
        rows.append(
            [
                name,
                str(len(found["differences"])),
                f"{found['shipped_us']:.0f} / {found['changed_us']:.0f}",
                f"{found['difference']:+.0f} ({each})",
                f"{found['ratio']:.3f}",
                "yes" if found["clear"] else "no",
                generator_note(found["runs"]),
                str(failures(found["runs"])),
            ]
        )
        if found["clear"] and found["difference"] < 0:
            clear.append(f"{name} ({found['difference']:+.0f} µs)")
    md += [table(header, rows), ""]
    md.append(para("nginx_cost_verdict", saved="; ".join(clear) or "none"))
    floor = change_figures(runs, ALL)
    if floor is not None:
        md.append(para("nginx_cost_floor", shipped=f"{floor['shipped_us']:.0f}", floor=f"{floor['changed_us']:.0f}"))
    md.extend(missing_note(missing, SECTION))
    return md
