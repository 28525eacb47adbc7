"""streaming: /stream and /events, timed chunk by chunk as a browser receives them.

With stream=True, Locust's own response time is only the time to the headers. So each
response also reports, as separate rows: time to first chunk, time to last chunk, and the
largest gap between chunks. Every chunk carries the time the app sent it; a first chunk that
arrives more than BUFFERING_DEADLINE_MS after it was sent fails the request as "buffering".
The client asks for gzip, as browsers do: that is where a buffering proxy holds streams back.
"""

from __future__ import annotations

import itertools
import json
import time

import urllib3
from locust import HttpUser, constant, task
from recording import HOST_HEADER  # importing it also registers the raw-timing listener

BUFFERING_DEADLINE_MS = 150
CHUNKS = 4
INTERVAL_MS = 250


def sent_at_of_stream_line(line: bytes) -> float | None:
    parts = line.split()
    return float(parts[1]) if len(parts) >= 2 else None


def sent_at_of_event_line(line: bytes) -> float | None:
    if not line.startswith(b"data: "):
        return None
    return float(json.loads(line.removeprefix(b"data: "))["sent_at"])


# ...and without a warning per request for it.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class StreamingUser(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.client.headers.update(HOST_HEADER)
        # Unverified over https://, as every scenario is (locust_throughput.py says why).
        self.client.verify = False

    def timed_stream(self, path: str, name: str, sent_at_of: object) -> None:
        started = time.perf_counter()
        with self.client.get(
            path, name=name, stream=True, catch_response=True, headers={"Accept-Encoding": "gzip"}
        ) as response:
            headers_at = time.perf_counter()
            arrivals: list[float] = []
            first_lag_ms: float | None = None
            pending = b""
            for data in response.iter_content(chunk_size=None):
                arrived = time.perf_counter()
                wall = time.time()
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    sent_at = sent_at_of(line)  # type: ignore[operator]
                    if sent_at is None:
                        continue
                    arrivals.append(arrived)
                    if first_lag_ms is None:
                        first_lag_ms = (wall - sent_at) * 1000
            if len(arrivals) != CHUNKS:
                response.failure(f"expected {CHUNKS} chunks, got {len(arrivals)}")
                return
            if first_lag_ms is not None and first_lag_ms > BUFFERING_DEADLINE_MS:
                response.failure(
                    f"buffering: first chunk arrived {first_lag_ms:.0f} ms after it was sent "
                    f"(deadline {BUFFERING_DEADLINE_MS} ms)"
                )
                return
            gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
            for metric, seconds in (
                ("time to headers", headers_at - started),
                ("time to first chunk", arrivals[0] - started),
                ("time to last chunk", arrivals[-1] - started),
                ("largest chunk gap", max(gaps, default=0.0)),
            ):
                self.environment.events.request.fire(
                    request_type="STREAM",
                    name=f"{name} {metric}",
                    response_time=seconds * 1000,
                    response_length=0,
                    response=None,
                    exception=None,
                    context={},
                )

    @task(3)
    def stream(self) -> None:
        self.timed_stream(
            f"/stream?chunks={CHUNKS}&interval_ms={INTERVAL_MS}&size=64", "/stream", sent_at_of_stream_line
        )

    @task(1)
    def events(self) -> None:
        self.timed_stream(f"/events?count={CHUNKS}&interval_ms={INTERVAL_MS}", "/events", sent_at_of_event_line)
