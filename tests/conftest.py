from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import SERVERS, LocalStack, local_stack


@pytest.fixture(scope="module", params=SERVERS)
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """nginx in front of each app server in turn, as local processes on loopback."""
    running = local_stack(request.param).start()
    try:
        yield running
    finally:
        running.stop()
