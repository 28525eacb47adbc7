"""The Django app on its own, through Django's test client, under production settings."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def client():
    workdir = Path(tempfile.mkdtemp(prefix="stack-unit-"))
    settings_env = {
        "DJANGO_SETTINGS_MODULE": "stack.settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "STATIC_ROOT": str(workdir / "static"),
        "DJANGO_ENV": "production",
    }
    saved = dict(os.environ)
    os.environ.update(settings_env)
    try:
        yield configured_client()
    finally:
        # Nothing in this process uses that database after this module; its directory goes.
        from django.db import connections

        connections.close_all()
        shutil.rmtree(workdir, ignore_errors=True)
        # Settings are read once, at setup; later tests (and the containers they start) must
        # not inherit a database path in this test's temporary directory.
        os.environ.clear()
        os.environ.update(saved)


def configured_client():
    import django
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    call_command("collectstatic", "--noinput", verbosity=0)
    call_command("prepare_db", verbosity=0)
    return Client(HTTP_HOST="localhost")


def test_plaintext_and_json(client):
    response = client.get("/plaintext")
    assert response.status_code == 200
    assert response.content == b"Hello, World!"
    assert response["Content-Type"] == "text/plain"
    assert client.get("/json").json() == {"message": "Hello, World!"}


def test_every_response_is_labelled(client):
    response = client.get("/json")
    # The test client is neither server: the label comes from the WSGI environ, not a setting.
    assert response["X-App-Server"] == "unknown"
    assert len(response["X-Request-ID"]) == 32


def test_valid_request_id_is_kept_and_invalid_one_replaced(client):
    assert client.get("/json", HTTP_X_REQUEST_ID="abc-123.XYZ_456")["X-Request-ID"] == "abc-123.XYZ_456"
    replaced = client.get("/json", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert replaced != "bad id with spaces"
    assert len(replaced) == 32


def test_index_uses_hashed_static_url(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "/static/stack/site." in body
    # ManifestStaticFilesStorage: content-hashed name, so nginx may cache it for a year.
    assert "/static/stack/site.css" not in body


def test_db_returns_a_seeded_row(client):
    row = client.get("/db").json()
    assert 1 <= row["id"] <= 10_000
    assert 1 <= row["randomNumber"] <= 10_000


@pytest.mark.parametrize("n", [1, 20, 500])
def test_queries_returns_n_rows(client, n):
    rows = client.get(f"/queries?n={n}").json()
    assert len(rows) == n


@pytest.mark.parametrize(
    "url",
    [
        "/queries?n=0",
        "/queries?n=501",
        "/queries?n=abc",
        "/stream?chunks=0",
        "/stream?size=10",
        "/stream?chunks=1000&interval_ms=1000",
        "/events?count=x",
        "/slow?ms=-1",
        "/slow?ms=999999",
        "/slow?ms=2001",
        "/slow?ms=10&cpu=2",
    ],
)
def test_bad_parameters_get_400_json(client, url):
    response = client.get(url)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()


def test_slow_is_bounded_by_slow_max_ms(client):
    from django.test import override_settings

    refused = client.get("/slow?ms=2001")
    assert refused.json() == {"error": "ms must be at most SLOW_MAX_MS=2000, got 2001"}
    with override_settings(SLOW_MAX_MS=10):
        assert client.get("/slow?ms=10").status_code == 200
        assert client.get("/slow?ms=11").status_code == 400


def test_stream_yields_chunks_of_the_requested_size(client):
    response = client.get("/stream?chunks=3&interval_ms=0&size=100")
    assert response["X-Accel-Buffering"] == "no"
    chunks = list(response.streaming_content)
    assert len(chunks) == 3
    assert all(len(chunk) == 100 for chunk in chunks)
    assert [int(chunk.split()[0]) for chunk in chunks] == [0, 1, 2]


def test_events_are_server_sent_events(client):
    response = client.get("/events?count=2&interval_ms=0")
    assert response["Content-Type"] == "text/event-stream"
    assert response["X-Accel-Buffering"] == "no"
    events = b"".join(response.streaming_content).decode().strip().split("\n\n")
    assert len(events) == 2
    assert json.loads(events[1].splitlines()[2].removeprefix("data: "))["seq"] == 1


def test_upload_counts_and_hashes_the_body(client):
    body = os.urandom(300_000)
    response = client.post("/upload", data=body, content_type="application/octet-stream")
    assert response.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_upload_rejects_get(client):
    assert client.get("/upload").status_code == 405


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_unknown_host_is_refused_by_django_too(client):
    assert client.get("/json", HTTP_HOST="evil.example").status_code == 400


def test_slow_sleeps_for_the_requested_time(client):
    assert client.get("/slow?ms=10").json() == {"slept_ms": 10}


def test_slow_with_cpu_computes_for_the_requested_time(client):
    cpu_before = time.process_time()
    assert client.get("/slow?ms=50&cpu=1").json() == {"slept_ms": 50}
    assert time.process_time() - cpu_before >= 0.04  # spent computing, not asleep


def test_items_stores_one_row_per_key_and_a_retry_finds_it(client):
    first = client.post("/items", data=json.dumps({"key": "order-42"}), content_type="application/json")
    assert first.status_code == 201
    assert first.json()["key"] == "order-42" and first.json()["created"] is True
    again = client.post("/items", data=json.dumps({"key": "order-42"}), content_type="application/json")
    assert again.status_code == 200
    assert again.json() == {**first.json(), "created": False}


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"key": ""}', b'{"key": 7}', b'{"key": "a b"}', b""])
def test_items_answers_400_json_to_a_bad_body(client, body):
    answer = client.post("/items", data=body, content_type="application/json")
    assert answer.status_code == 400
    assert "error" in answer.json()


def test_items_is_post_only(client):
    assert client.get("/items").status_code == 405
