"""Turn bench.py's raw.json into report.md and PNG charts. No Docker here: the analysis is testable alone.

python loadtest/bench/report.py results/bench/raw.json [previous/raw.json]   # re-render from saved data

The work is split by kind: report_analysis.py computes the figures and verdicts; report_sections_*.py
(1_3, 4_7, 8, 9, 10, 11 and 12) write each section's Markdown from report_markdown.py's tables and cells and
report_template.md's prose; report_charts.py draws the charts.
This module puts the sections in order, and keeps the names bench.py and the tests use.
"""

import json
import sys
from collections.abc import Callable
from pathlib import Path

from report_analysis import (
    PROXY_PATHS,
    concurrent_summary,
    database_figures,
    handshakes,
    https_plaintext,
    page_ratio,
    peer_matched,
    proxy_tax,
    sweep,
    ttfb_deltas,
)
from report_markdown import Results, generator_note, one_line
from report_previous import comparison
from report_sections_1_3 import introduction, peers_section, proxy_tax_section, servers_section
from report_sections_4_7 import ceilings_section, generator_section, reproduce, sweep_section, ttfb_section
from report_sections_8 import https_section
from report_sections_9 import databases_section
from report_sections_10 import models_section
from report_sections_11 import metrics_section
from report_sections_12 import nginx_cost_section

__all__ = [
    "PROXY_PATHS",
    "SECTIONS",
    "concurrent_summary",
    "database_figures",
    "generator_note",
    "handshakes",
    "https_plaintext",
    "main",
    "one_line",
    "page_ratio",
    "peer_matched",
    "proxy_tax",
    "sweep",
    "ttfb_deltas",
    "write_report",
]

# The report, top to bottom.
SECTIONS: tuple[Callable[[Results], list[str]], ...] = (
    introduction,
    proxy_tax_section,  # 1. what nginx costs in front of each server
    servers_section,  # 2. gunicorn against uWSGI
    peers_section,  # 3. this stack against other well-known stacks' settings
    ceilings_section,  # 4. nginx alone, a hello-world, Django
    ttfb_section,  # 5. streaming: does nginx hold back the first byte?
    sweep_section,  # 6. workers x threads against the shipped defaults
    generator_section,  # 7. was the load generator the limit?
    https_section,  # 8. HTTPS beside plain HTTP: kept-alive requests, handshakes, HTTP/2 against HTTP/1.1
    databases_section,  # 9. SQLite against PostgreSQL, persistent connections against a pool
    models_section,  # 10. threads against gevent: ordinary requests, and open event streams
    metrics_section,  # 11. what the app's metrics cost, on against off
    nginx_cost_section,  # 12. nginx's per-request work, one config change at a time
    reproduce,
)


def write_report(data: dict, out_dir: Path, previous: dict | None = None) -> Path:
    """Write report.md and its charts into out_dir; return report.md's path. With the previous
    run's raw data, its headline figures go beside this run's, after the introduction."""
    results = Results(data, out_dir)
    first, *rest = SECTIONS
    md = [*first(results), *comparison(data, previous)]
    md += [paragraph for section in rest for paragraph in section(results)]
    path = out_dir / "report.md"
    path.write_text("\n".join(md))
    return path


def main() -> None:
    raw = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/bench/raw.json")
    previous = json.loads(Path(sys.argv[2]).read_text()) if len(sys.argv) > 2 else None
    print(write_report(json.loads(raw.read_text()), raw.parent, previous))


if __name__ == "__main__":
    main()
