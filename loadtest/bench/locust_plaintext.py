"""The Locust side of the load-generator cross-check: as many /plaintext requests as Locust can send."""

from locust import FastHttpUser, task


class PlaintextUser(FastHttpUser):
    # No think time, like wrk: every user sends its next request as soon as the last one returns.
    def wait_time(self) -> float:
        return 0

    @task
    def plaintext(self) -> None:
        self.client.get("/plaintext", headers={"Host": "localhost"})
