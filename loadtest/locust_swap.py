"""swap: steady load at a fixed rate while the app server is swapped under it.

Each user sends LOADTEST_USER_RPS requests a second (default 40), so users x rate is the
load whatever the latency: pick about half of what the stack can take. loadtest/run.py
swaps the server at the planned moments and reports the swap windows apart from the
steady state.
"""

import os

from locust import FastHttpUser, constant_throughput, task
from recording import HOST_HEADER  # importing it also registers the raw-timing listener


class SteadyUser(FastHttpUser):
    wait_time = constant_throughput(float(os.environ.get("LOADTEST_USER_RPS", "40")))
    default_headers = HOST_HEADER

    @task(3)
    def plaintext(self) -> None:
        self.client.get("/plaintext")

    @task(3)
    def json_message(self) -> None:  # not "json": User.json() describes the class to the web UI
        self.client.get("/json")

    @task(2)
    def db(self) -> None:
        self.client.get("/db")
