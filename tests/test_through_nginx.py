"""One suite, both servers, both worker models: real nginx in front of real gunicorn, then real
uWSGI, on loopback; each under threads and under gevent, since all of this must hold under either."""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import os
import re
import socket
import time
import zlib
from collections.abc import Iterator

import pytest
import requests
from harness import HOST, MODELS, SERVERS, LocalStack, buffering_nginx, local_stack, wait_until

# nginx must hand each chunk on within this long of the app sending it (issue: 150 ms).
MAX_CHUNK_LAG_S = 0.150


@pytest.fixture(scope="module", params=list(itertools.product(SERVERS, MODELS)), ids="-".join)
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """conftest.py's stack, under each worker model (APP_WORKER_MODEL) too."""
    server, model = request.param
    running = local_stack(server, APP_WORKER_MODEL=model).start()
    try:
        yield running
    finally:
        running.stop()


def get(stack: LocalStack, path: str, **headers: str) -> requests.Response:
    return requests.get(stack.base_url + path, headers={"Host": HOST, **headers}, timeout=10)


def raw_exchange(stack: LocalStack, request: bytes, timeout: float = 5) -> bytes:
    """Send bytes as they are and read until nginx closes: for requests no client library sends."""
    with socket.create_connection(("127.0.0.1", stack.nginx_port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # nginx may reset after answering a request it refuses to read on
        return received


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/plaintext", "text/plain"),
        ("/json", "application/json"),
        ("/db", "application/json"),
        ("/queries?n=20", "application/json"),
        ("/stream?chunks=2&interval_ms=10", "text/plain; charset=utf-8"),
        ("/events?count=2&interval_ms=10", "text/event-stream"),
        ("/slow?ms=50", "application/json"),
        ("/healthz", "application/json"),
        ("/readyz", "application/json"),
    ],
)
def test_every_endpoint_answers_through_nginx(stack, path, content_type):
    response = get(stack, path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-App-Server"] == stack.server
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert response.headers["Server"] == "nginx"  # server_tokens off: no version


def test_queries_returns_n_rows_and_bad_n_is_400(stack):
    assert len(get(stack, "/queries?n=20").json()) == 20
    bad = get(stack, "/queries?n=9999")
    assert bad.status_code == 400
    assert bad.json() == {"error": "n must be between 1 and 500, got 9999"}
    assert bad.headers["X-App-Server"] == stack.server


def logged(stack: LocalStack, line: str, timeout: float = 10) -> str:
    """The app server's log once it has `line`: it writes a request's line after the response."""
    wait_until(lambda: line in stack.app_log.read_text(), timeout, f"{line!r} in the app server's log")
    return stack.app_log.read_text()


def test_request_id_from_client_is_passed_through_when_valid(stack):
    assert get(stack, "/json", **{"X-Request-ID": "client-id-12345"}).headers["X-Request-ID"] == ("client-id-12345")
    replaced = get(stack, "/json", **{"X-Request-ID": "x" * 300}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    # The app server logs requests that went wrong, with the id nginx used; nginx logs them all.
    get(stack, "/json", **{"X-Request-ID": "fine-id-12345"})
    get(stack, "/queries?n=0", **{"X-Request-ID": "logged-id-67890"})
    app_log = logged(stack, "request_id=logged-id-67890")
    assert "status=400" in app_log
    assert "fine-id-12345" not in app_log


def test_static_files_come_from_nginx_not_the_app(stack):
    page = get(stack, "/").text
    css_path = re.search(r'href="(/static/stack/site\.[0-9a-f]+\.css)"', page).group(1)
    css = get(stack, css_path)
    assert css.status_code == 200
    assert css.headers["Content-Type"] == "text/css"
    assert css.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "X-App-Server" not in css.headers
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    missing = get(stack, "/static/stack/nope.css")
    assert missing.status_code == 404
    assert "X-App-Server" not in missing.headers
    assert "Cache-Control" not in missing.headers  # a miss must not be cached for a year
    # A 400 the app server logs, asked after them: once it is in the log, theirs would be too.
    get(stack, "/queries?n=0", **{"X-Request-ID": "after-static-1"})
    assert "/static/" not in logged(stack, "request_id=after-static-1")


def read_stream_lines(stack: LocalStack, path: str, encoding: str) -> list[tuple[float, bytes]]:
    """Read a chunked response as it arrives; return (arrival time, line) for every line."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.nginx_port, timeout=10)
    connection.request("GET", path, headers={"Host": HOST, "Accept-Encoding": encoding})
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Encoding", "identity") == encoding
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    pending = b""
    lines: list[tuple[float, bytes]] = []
    while data := response.read1(65536):
        arrived = time.time()
        pending += decoder.decompress(data) if decoder else data
        *complete, pending = pending.split(b"\n")
        lines.extend((arrived, line) for line in complete)
    connection.close()
    return lines


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_stream_arrives_unbuffered(stack, encoding):
    # Browsers ask for gzip; a buffered gzip response would arrive all at once at the end.
    lines = read_stream_lines(stack, "/stream?chunks=4&interval_ms=500&size=64", encoding)
    assert [int(line.split()[0]) for _, line in lines] == [0, 1, 2, 3]
    lags = [arrived - float(line.split()[1]) for arrived, line in lines]
    assert max(lags) < MAX_CHUNK_LAG_S, f"chunk lags {lags}"
    # The chunks really were spread over time: 3 intervals of 500 ms between first and last.
    assert lines[-1][0] - lines[0][0] > 1.3


def test_server_sent_events_arrive_unbuffered(stack):
    lines = read_stream_lines(stack, "/events?count=3&interval_ms=500", "identity")
    events = [json.loads(line.removeprefix(b"data: ")) for arrived, line in lines if line.startswith(b"data: ")]
    arrivals = [arrived for arrived, line in lines if line.startswith(b"data: ")]
    assert [event["seq"] for event in events] == [0, 1, 2]
    lags = [arrived - event["sent_at"] for arrived, event in zip(arrivals, events, strict=True)]
    assert max(lags) < MAX_CHUNK_LAG_S, f"event lags {lags}"


def test_upload_is_counted_and_hashed(stack):
    body = os.urandom(1_000_000)
    response = requests.post(stack.base_url + "/upload", data=body, headers={"Host": HOST}, timeout=10)
    assert response.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_chunked_upload_is_counted_and_hashed(stack):
    pieces = [os.urandom(100_000) for _ in range(5)]
    # A generator body makes requests send Transfer-Encoding: chunked.
    response = requests.post(stack.base_url + "/upload", data=iter(pieces), headers={"Host": HOST}, timeout=10)
    body = b"".join(pieces)
    assert response.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_body_over_the_limit_is_413_and_never_reaches_the_app(stack):
    limit = int(stack.env["MAX_BODY_MB"]) * 1024 * 1024
    # Headers only: nginx answers from Content-Length before a byte of the body is sent.
    answer = raw_exchange(
        stack,
        f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {limit + 1}\r\n"
        "X-Request-ID: too-large-body-1\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
    )
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    assert b'"error": "request body exceeds the size limit"' in rest
    assert b"X-App-Server" not in rest
    # nginx writes its access log at least once a second (buffer=64k flush=1s).
    access_log = stack.workdir / "nginx-access.log"
    deadline = time.monotonic() + 5
    while "too-large-body-1" not in access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "too-large-body-1" in access_log.read_text()
    assert "too-large-body-1" not in stack.app_log.read_text()


def test_unknown_host_gets_no_answer(stack):
    answer = raw_exchange(stack, b"GET /json HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert answer == b""  # 444: nginx closes the connection without a response


def test_request_without_host_is_refused(stack):
    answer = raw_exchange(stack, b"GET /json HTTP/1.0\r\n\r\n")
    assert answer == b""


def test_nginx_health_answers_on_any_host(stack):
    response = requests.get(stack.base_url + "/nginx-health", headers={"Host": "anything"}, timeout=5)
    assert response.status_code == 200
    assert response.text == "ok\n"


def test_the_stream_check_catches_a_buffering_nginx(stack):
    """The check above must be able to fail: against a buffering nginx, it does."""
    with buffering_nginx(stack) as buffered:
        lines = read_stream_lines(buffered, "/stream?chunks=4&interval_ms=500&size=64", "gzip")
    lags = [arrived - float(line.split()[1]) for arrived, line in lines]
    assert lags[0] > 1.0, f"first chunk should have been held back, lags {lags}"


def test_forwarded_headers_from_the_client_are_overwritten(stack):
    info = get(stack, "/request-info", **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}).json()
    assert info["x_forwarded_proto"] == "http"
    assert info["scheme"] == "http"
    assert info["is_secure"] is False
    assert info["x_forwarded_for"] == "127.0.0.1"
    assert info["remote_addr"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("request_bytes", "statuses"),
    [
        # One header line longer than a large_client_header_buffers buffer (8k).
        (b"GET /json HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", {b"400", b"431", b"494"}),
        (b"GARBAGE\r\n\r\n", {b"400"}),
        (b"GET /json HTTP/9.9\r\nHost: localhost\r\n\r\n", {b"400", b"505"}),
        (b"GET /static/../stack/settings.py HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", {b"404"}),
        # Encoded, the same walk climbs above the root once decoded: nginx refuses it outright.
        (
            b"GET /static/..%2f..%2f..%2fstack%2fsettings.py HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            {b"400", b"404"},
        ),
    ],
)
def test_bad_requests_are_refused_and_the_stack_stays_healthy(stack, request_bytes, statuses):
    answer = raw_exchange(stack, request_bytes)
    assert answer.split(b" ")[1] in statuses, answer[:200]
    assert b"SECRET_KEY" not in answer
    assert get(stack, "/readyz").status_code == 200


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


@pytest.mark.parametrize("path", ["/", "/json", "/queries?n=0", "/no-such-page", "/static/stack/nope.css"])
def test_security_headers_on_every_response(stack, path):
    response = get(stack, path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (path, name)


def test_security_headers_on_nginx_error_pages(stack):
    limit = int(stack.env["MAX_BODY_MB"]) * 1024 * 1024
    answer = raw_exchange(
        stack, f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {limit + 1}\r\n\r\n".encode()
    ).decode(errors="replace")
    for name, value in SECURITY_HEADERS.items():
        assert f"{name}: {value}" in answer, name
