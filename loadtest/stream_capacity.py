"""The streams scenario's ramp and how its results are read: the one home of both.

loadtest/locust_streams.py ramps its event-stream clients by these steps; loadtest/run.py reads the
per-request rows back step by step with `capacity`, and reports the largest number of open streams
at which every event arrived within LATE_MS of being sent and /plaintext kept p99 under PROBE_P99_MS.

The ramp comes from the environment, so a run can be small (CI) or go to thousands (make bench):
STREAMS_STEP clients more every STREAMS_STEP_S seconds, up to STREAMS_MAX.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent / "bench"))
from percentiles import percentile  # the project's one percentile

LATE_MS = 150.0
PROBE_P99_MS = 50.0
# Row names the scenario records: one per event (its lateness), and the probe's requests.
LATENESS = "event lateness"
PROBE = "/plaintext (probe)"
# The first seconds of a step are its new clients connecting: a step is read from then on.
SETTLE_S = 5.0


def ramp() -> tuple[int, float, int]:
    """(clients added per step, seconds per step, most clients), from STREAMS_STEP, _STEP_S and _MAX."""
    step = int(os.environ.get("STREAMS_STEP", "200"))
    step_s = float(os.environ.get("STREAMS_STEP_S", "20"))
    most = int(os.environ.get("STREAMS_MAX", "3000"))
    if step < 1 or step_s <= SETTLE_S or most < step:
        raise ValueError(
            f"STREAMS_STEP ({step}) must be at least 1, STREAMS_STEP_S ({step_s}) more than {SETTLE_S}, "
            f"and STREAMS_MAX ({most}) at least STREAMS_STEP"
        )
    return step, step_s, most


def steps() -> list[tuple[float, int]]:
    """Each step's start (seconds into the run) and its stream clients."""
    step, step_s, most = ramp()
    return [(index * step_s, (index + 1) * step) for index in range(most // step)]


def capacity(rows: list[dict[str, str]], begin: float) -> dict:
    """Per step: events, the latest one's lateness, late events, failed streams, the probe's p99; and the
    largest number of clients at which this step and every step before it kept both bounds."""
    step, step_s, _ = ramp()
    per_step = []
    largest = 0
    for start, clients in steps():
        window = (begin + start + SETTLE_S, begin + start + step_s)
        inside = [row for row in rows if window[0] <= float(row["start"]) < window[1]]
        events = [float(row["response_time_ms"]) for row in inside if row["name"] == LATENESS]
        probe = sorted(float(row["response_time_ms"]) for row in inside if row["name"] == PROBE)
        failed = sum(1 for row in inside if row["failed"] == "1" and row["name"] != LATENESS)
        late = sum(1 for ms in events if ms > LATE_MS)
        p99 = percentile(probe, 0.99)
        kept = bool(events) and bool(probe) and late == 0 and failed == 0 and p99 <= PROBE_P99_MS
        if not events:
            break  # the run ended before this step
        per_step.append(
            {
                "clients": clients,
                "events": len(events),
                "max_lateness_ms": round(max(events), 1),
                "late": late,
                "failed": failed,
                "probe_p99_ms": round(p99, 2),
                "kept": kept,
            }
        )
        if kept and largest == clients - step:
            largest = clients
    return {"late_ms": LATE_MS, "probe_p99_ms": PROBE_P99_MS, "steps": per_step, "capacity": largest}
