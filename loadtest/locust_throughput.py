"""throughput: the TechEmpower mix (plaintext, json, one row, twenty rows) as fast as it answers.

A closed loop: each user sends its next request when the last one answers. FastHttpUser
keeps the generator's CPU per request low, so the server, not Locust, sets the pace.

Over https:// no scenario verifies nginx's certificate (FastHttpUser's default): a load test
measures the stack it was pointed at, whose certificate may name the public host or come from
the local CA. The TLS tests check certificates (tests/test_tls.py).
"""

from locust import FastHttpUser, constant, task
from recording import HOST_HEADER  # importing it also registers the raw-timing listener


class ThroughputUser(FastHttpUser):
    wait_time = constant(0)
    default_headers = HOST_HEADER

    @task(4)
    def plaintext(self) -> None:
        self.client.get("/plaintext")

    @task(4)
    def json_message(self) -> None:  # not "json": User.json() describes the class to the web UI
        self.client.get("/json")

    @task(2)
    def db(self) -> None:
        self.client.get("/db")

    @task(1)
    def queries(self) -> None:
        self.client.get("/queries?n=20", name="/queries?n=20")
