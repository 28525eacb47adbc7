"""The report's Markdown vocabulary: its prose blocks (report_template.md), tables, and the cells they hold.

A cell is a measured figure, or "n/a: <reason>" where the step that would have measured it failed.
"""

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from report_analysis import generator_limited, med

TEMPLATE = Path(__file__).with_name("report_template.md")
MARKER = re.compile(r"^<!-- (\w+) -->$", re.MULTILINE)


# --- prose -----------------------------------------------------------------------------------
@functools.cache
def blocks() -> dict[str, str]:
    """The template's blocks by name: the text between a marker line and the next, blank lines around it left out."""
    parts = MARKER.split(TEMPLATE.read_text())
    # parts: [preamble, name, text, name, text, ...]
    return {name: body.strip("\n") for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def text(name: str, **values: object) -> str:
    """A block with its {fields} filled: no newline around it."""
    return blocks()[name].format(**values)


def para(name: str, **values: object) -> str:
    """A block as a paragraph of the report: the joining newline after it makes the blank line."""
    return text(name, **values) + "\n"


def figure(alt: str, name: str) -> str:
    """A chart, as its own paragraph."""
    return f"\n![{alt}]({name})\n"


# --- what a section is given ----------------------------------------------------------------
@dataclass(frozen=True)
class Results:
    """A bench run's results: raw.json's data, and the folder its report and charts go to."""

    data: dict
    out_dir: Path

    @property
    def runs(self) -> list[dict]:
        return self.data["runs"]

    @property
    def missing(self) -> list[dict]:
        return self.data.get("missing", [])


def heading(section: str) -> str:
    """A section's title, from its <section>_title block."""
    return para(f"{section}_title")


# --- tables and cells ------------------------------------------------------------------------
def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}" if len(values) > 1 else "one run"


def share_text(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole and not math.isnan(part) and not math.isnan(whole) else "n/a (not measured)"


def one_line(reason: str, limit: int) -> str:
    """A reason on one line, at most limit characters: a long one keeps its start (what failed) and its
    end (the error's last words), the middle elided."""
    line = " ".join(reason.split()) or "no reason recorded"
    if len(line) > limit:
        head = limit // 2
        line = line[:head] + " [...] " + line[-(limit - head - 7) :]
    return line


def short(reason: str, limit: int = 160) -> str:
    """A reason cut to a table cell's length, with no | to break the table."""
    return one_line(reason, limit).replace("|", "\\|")


def na(reason: str) -> str:
    return f"n/a: {short(reason)}"


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


def generator_note(runs: list[dict]) -> str:
    """The generator's CPU (median, in cores) and whether it may have been the bottleneck."""
    # Each reading stays paired with its own run's thread count: pair first, then leave out the unread.
    paired = [(r["generator_cores"], r["generator_threads"]) for r in runs]
    measured = [(cores, threads) for cores, threads in paired if not math.isnan(cores)]
    if not measured:
        return reading_missing(runs, "CPU")
    flag = "**yes**" if generator_limited(measured) else "no"
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


# --- what could not be measured --------------------------------------------------------------
def describe_missing(m: dict) -> str:
    where = " ".join(x for x in (f"`{m['label']}`" if m["label"] else "", f"r{m['round']}" if m["round"] else "") if x)
    return f"{m['section']} {where or '(the section itself)'}, {m['what']}: {short(m['reason'])}"


def missing_note(missing: list[dict], *sections: str) -> list[str]:
    """What a section could not measure, listed under it; nothing when it measured everything."""
    items = [describe_missing(m) for m in missing if m["section"] in sections]
    return ["\n" + para("not_measured", items="; ".join(items))] if items else []
