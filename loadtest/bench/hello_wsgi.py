"""The ceiling for a Python app server: a WSGI app with no framework, the same 13 bytes as /plaintext."""

from collections.abc import Callable, Iterable

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]
