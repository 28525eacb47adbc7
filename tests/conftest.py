from __future__ import annotations

from collections.abc import Iterator

import pytest
from compose_stack import build_images, docker_available, ensure_secret_file
from harness import SERVERS, LocalStack, local_stack


@pytest.fixture(scope="module", params=SERVERS)
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """nginx in front of each app server in turn, as local processes on loopback."""
    running = local_stack(request.param).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module", params=SERVERS)
def shipped(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """Each app server behind nginx with the shipped HTTPS settings: plain HTTP redirects to HTTPS
    (the harness turns that off for the tests that look at the app over plain HTTP)."""
    running = local_stack(request.param, HTTPS_REDIRECT="1").start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def images() -> None:
    """The e2e tests' images, built once per run (cached layers make a rebuild quick); a missing
    engine fails the test that needs it, with the reason, and is never a skip."""
    problem = docker_available()
    if problem:
        pytest.fail(f"the e2e tests need Docker: {problem} (make test-fast leaves them out)")
    ensure_secret_file()
    build_images()
