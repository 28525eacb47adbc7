"""Imported by every scenario: keeps every request's raw timing, for exact percentiles.

Locust rounds its percentile buckets to about two significant digits, so each process also
writes one CSV row per request to $LOADTEST_OUT/requests-<pid>.csv; loadtest/run.py computes
the summary from those rows. The server that answered comes from X-App-Server.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment

# The Host header to send when the URL's host is not one the stack serves, e.g. the
# compose service name `nginx` from inside the loadtest containers.
HOST_HEADER: dict[str, str] = (
    {"Host": os.environ["LOADTEST_HOST_HEADER"]} if os.environ.get("LOADTEST_HOST_HEADER") else {}
)

FIELDS = (
    "start",
    "request_type",
    "name",
    "response_time_ms",
    "length",
    "status",
    "failed",
    "error",
    "server",
)
_rows: list[tuple[Any, ...]] = []


@events.request.add_listener
def record(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    response: Any = None,
    exception: BaseException | None = None,
    start_time: float | None = None,
    **_: Any,
) -> None:
    headers = getattr(response, "headers", None) or {}
    _rows.append(
        (
            round(start_time if start_time is not None else time.time() - response_time / 1000, 6),
            request_type,
            name,
            round(response_time, 3),
            response_length,
            getattr(response, "status_code", "") or "",
            int(exception is not None),
            "" if exception is None else str(exception).splitlines()[0][:200],
            headers.get("X-App-Server", ""),
        )
    )


@events.quitting.add_listener
def write_rows(environment: Environment, **_: Any) -> None:
    out = os.environ.get("LOADTEST_OUT")
    if not out:
        return
    with (Path(out) / f"requests-{os.getpid()}.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(FIELDS)
        writer.writerows(_rows)
