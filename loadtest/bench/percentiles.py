"""The project's one percentile. Standard library only.

Nearest rank: the result is always one of the samples, a latency that was observed, never a value
interpolated between two of them. loadtest/run.py (each Locust run's p50/p95/p99) and the bench
report (time to first byte, streams) both use it; loadtest/run.py puts this folder on sys.path.
"""

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], fraction: float) -> float:
    """The nearest-rank percentile of values, in any order: fraction 0.95 is p95. NaN when there are none.

    The sample at rank ceil(fraction x n), counting from 1 (the smallest at fraction 0): p50 of
    [1, 2, 3, 4] is 2, p95 of 100 samples is the 95th smallest.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"a fraction between 0 and 1 (0.95 for p95), got {fraction!r}")
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
