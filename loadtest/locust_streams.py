"""streams: many long-lived server-sent-event clients, each event's lateness checked, while one probe
user times /plaintext; the clients ramp up in steps until a bound breaks.

Each EventStreamUser holds one `/events` stream open (an event a second, asking for gzip as browsers
do) and, when the app ends it after MAX_STREAM_MS, opens the next at once, as EventSource reconnects.
Every event carries the time the app sent it; its lateness (arrival minus sent_at) is recorded as a
request named "event lateness", failed when over LATE_MS. ProbeUser sends /plaintext ten times a
second, its own row in the results. StepRamp adds clients in steps (loadtest/stream_capacity.py, the
ramp's one home); loadtest/run.py then reads each step's window and reports the largest number of
open streams at which every event was on time and /plaintext kept its p99 in bounds.
"""

from __future__ import annotations

import json
import random
import time

import urllib3
from locust import FastHttpUser, HttpUser, LoadTestShape, constant, task
from recording import HOST_HEADER  # importing it also registers the raw-timing listener
from stream_capacity import LATE_MS, LATENESS, PROBE, ramp

EVENT_INTERVAL_MS = 1000
# 20 events of 1 s: the app's longest stream (MAX_STREAM_MS in app/stack/views.py).
EVENTS_PER_STREAM = 20

# Over https:// the certificate is not verified (locust_throughput.py says why), and not warned about.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class LateEvent(Exception):
    pass


class EventStreamUser(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.client.headers.update({**HOST_HEADER, "Accept-Encoding": "gzip", "Accept": "text/event-stream"})
        self.client.verify = False
        # The first stream is cut short at random, so the clients of one step do not all reconnect in
        # the same second EVENTS_PER_STREAM later: real clients come and go at their own times.
        self.next_count = random.randint(1, EVENTS_PER_STREAM)

    def record(self, lateness_ms: float, exception: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="EVENT",
            name=LATENESS,
            response_time=lateness_ms,
            response_length=0,
            response=None,
            exception=exception,
            context={},
            start_time=time.time() - lateness_ms / 1000,
        )

    @task
    def listen(self) -> None:
        count, self.next_count = self.next_count, EVENTS_PER_STREAM
        path = f"/events?count={count}&interval_ms={EVENT_INTERVAL_MS}"
        with self.client.get(path, name="/events", stream=True, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            pending = b""
            received = 0
            for chunk in response.iter_content(chunk_size=None):
                arrived = time.time()
                pending += chunk
                while b"\n\n" in pending:
                    event, pending = pending.split(b"\n\n", 1)
                    data = next((line for line in event.split(b"\n") if line.startswith(b"data: ")), None)
                    if data is None:
                        continue
                    received += 1
                    lateness = (arrived - json.loads(data[6:])["sent_at"]) * 1000
                    late = LateEvent(f"late by {lateness:.0f} ms") if lateness > LATE_MS else None
                    self.record(lateness, late)
            if received != count:
                response.failure(f"stream ended after {received} of {count} events")


class ProbeUser(FastHttpUser):
    """One user, whatever the ramp: /plaintext ten times a second, timed while the streams run."""

    fixed_count = 1
    wait_time = constant(0.1)
    default_headers = HOST_HEADER

    @task
    def plaintext(self) -> None:
        self.client.get("/plaintext", name=PROBE)


class StepRamp(LoadTestShape):
    """More stream clients every step (stream_capacity.ramp), then stop."""

    def tick(self) -> tuple[int, float] | None:
        step, step_s, most = ramp()
        users = (int(self.get_run_time() // step_s) + 1) * step
        # --run-time (run.py's --duration) bounds the ramp too: Locust leaves that to the shape.
        run_time = self.runner.environment.parsed_options.run_time if self.runner else None
        if users > most or (run_time and self.get_run_time() >= run_time):
            return None
        # The probe is one of the users; a step's new clients all connect within its first seconds.
        return users + ProbeUser.fixed_count, max(step / 2, 1)
