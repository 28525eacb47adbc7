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
from types import SimpleNamespace

from geventhttpclient import HTTPClient
from locust import FastHttpUser, LoadTestShape, User, constant, task
from recording import HOST_HEADER  # importing it also registers the raw-timing listener
from stream_capacity import LATE_MS, LATENESS, PROBE, ramp

EVENT_INTERVAL_MS = 1000
# 20 events of 1 s: the app's longest stream (MAX_STREAM_MS in app/stack/views.py).
EVENTS_PER_STREAM = 20
# A stream that sends nothing for this long has failed (its events are a second apart).
NETWORK_TIMEOUT_S = 10.0


class StreamFailed(Exception):
    pass


class LateEvent(Exception):
    pass


class EventStreamUser(User):
    """One EventSource: geventhttpclient's client read event by event (Locust's FastHttpUser is built on
    it). HttpUser's requests-based client cost so much CPU per new stream that, with hundreds
    connecting at once, the generator itself held events back for hundreds of milliseconds, while
    a separate light reader saw the same streams on time (docs/performance.md, the streams scenario)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        headers = {**HOST_HEADER, "Accept-Encoding": "gzip, deflate, br", "Accept": "text/event-stream"}
        # Over https:// the certificate is not verified (locust_throughput.py says why).
        self.http = HTTPClient.from_url(
            self.host, headers=headers, insecure=True, network_timeout=NETWORK_TIMEOUT_S, connection_timeout=5
        )
        # The first stream is cut short at random, so the clients of one step do not all reconnect in
        # the same second EVENTS_PER_STREAM later: real clients come and go at their own times.
        self.next_count = random.randint(1, EVENTS_PER_STREAM)

    def on_stop(self) -> None:
        self.http.close()

    def record(
        self, name: str, started: float, ms: float, exception: Exception | None, response: object = None
    ) -> None:
        self.environment.events.request.fire(
            request_type="EVENT" if name == LATENESS else "GET",
            name=name,
            response_time=ms,
            response_length=0,
            response=response,
            exception=exception,
            context={},
            start_time=started,
        )

    @task
    def listen(self) -> None:
        count, self.next_count = self.next_count, EVENTS_PER_STREAM
        started, clock = time.time(), time.perf_counter()
        received, failure, seen, headers_ms = 0, None, None, 0.0
        try:
            response = self.http.get(f"/events?count={count}&interval_ms={EVENT_INTERVAL_MS}")
            headers_ms = (time.perf_counter() - clock) * 1000
            seen = SimpleNamespace(
                status_code=response.status_code, headers={"X-App-Server": response.get("X-App-Server", "")}
            )
            if response.status_code != 200:
                raise StreamFailed(f"status {response.status_code}")
            if response.get("Content-Encoding"):
                # nginx leaves text/event-stream out of gzip_types; this reader reads events raw.
                raise StreamFailed(f"events arrived {response.get('Content-Encoding')}-encoded")
            # geventhttpclient undoes the chunked framing; an event ends with a blank line.
            while event := response.readline(b"\n\n"):
                arrived = time.time()
                data = next((line for line in event.split(b"\n") if line.startswith(b"data: ")), None)
                if data is None:
                    continue
                received += 1
                sent_at = json.loads(data[6:])["sent_at"]
                lateness = (arrived - sent_at) * 1000
                late = LateEvent(f"late by {lateness:.0f} ms") if lateness > LATE_MS else None
                self.record(LATENESS, sent_at, lateness, late)
            if received != count:
                raise StreamFailed(f"stream ended after {received} of {count} events")
        except Exception as error:  # a refused connection, a timeout, a short stream: one failed stream
            failure = error
        # Its time is the time to the headers, as Locust times a streamed response; the events are rows.
        self.record("/events", started, headers_ms or (time.perf_counter() - clock) * 1000, failure, seen)


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
