"""One parity suite: the same requests through nginx to gunicorn and to uWSGI, over plain HTTP and
over HTTPS, answers compared field by field, under each worker model. What the app sees of scheme,
host, client address and body must not depend on the server, nor on threads or gevent."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
from harness import HOST, MODELS, SERVERS, LocalStack, local_stack, tls_files

BODY = os.urandom(200_000)
SPOOFED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "evil.example"}
CASES = {
    "plain get": ("GET", "/request-info?a=1&b=two", {}, None),
    "spoofed forwarded headers": ("GET", "/request-info", SPOOFED, None),
    "post body": ("POST", "/request-info", {"Content-Type": "application/octet-stream"}, BODY),
    "chunked post body": ("POST", "/request-info", {"Content-Type": "application/octet-stream"}, "chunked"),
    "form post": ("POST", "/request-info?x=y", {"Content-Type": "application/x-www-form-urlencoded"}, b"k=v&w=z"),
    "empty post": ("POST", "/request-info", {}, b""),
}


@pytest.fixture(scope="module", params=MODELS)
def both(request: pytest.FixtureRequest) -> Iterator[dict[str, LocalStack]]:
    stacks = {server: local_stack(server, APP_WORKER_MODEL=request.param).start() for server in SERVERS}
    try:
        yield stacks
    finally:
        for running in stacks.values():
            running.stop()


def ask(stack: LocalStack, scheme: str, method: str, path: str, headers: dict, body: bytes | str | None) -> dict:
    data = iter([BODY[:100_000], BODY[100_000:]]) if body == "chunked" else body
    base, port = (stack.https_url, stack.https_port) if scheme == "https" else (stack.base_url, stack.nginx_port)
    response = requests.request(
        method, base + path, headers={"Host": HOST, **headers}, data=data, timeout=10, verify=tls_files() / "ca/ca.pem"
    )
    assert response.status_code == 200
    assert response.headers["X-App-Server"] == stack.server
    if scheme == "https":
        # Secure cookies are set (the CSRF cookie request-info sets), and only over HTTPS.
        assert "; Secure" in response.headers["Set-Cookie"]
    # Each stack has ports of its own: compare everything else.
    return {key: value.replace(f":{port}", ":PORT") if isinstance(value, str) else value
            for key, value in response.json().items()}  # fmt: skip


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("case", CASES)
def test_both_servers_see_the_same_request(both, case, scheme):
    answers = {server: ask(stack, scheme, *CASES[case]) for server, stack in both.items()}
    gunicorn, uwsgi = answers["gunicorn"], answers["uwsgi"]
    assert set(gunicorn) == set(uwsgi)
    differing = {field: (gunicorn[field], uwsgi[field]) for field in gunicorn if gunicorn[field] != uwsgi[field]}
    assert differing == {}
    # And what they agree on is the trustworthy value, not the client's claim: the scheme nginx
    # was reached by, and the host and port the client used, in absolute URLs too.
    assert gunicorn["is_secure"] is (scheme == "https")
    assert gunicorn["scheme"] == scheme
    assert gunicorn["remote_addr"] == "127.0.0.1"
    assert gunicorn["host"] == f"{HOST}:PORT"
    assert gunicorn["absolute_uri"].startswith(f"{scheme}://{HOST}:PORT/request-info")
