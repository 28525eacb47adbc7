"""Request plumbing shared by every view: client address, request id, which server answered."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponseBase, JsonResponse

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# The same rule nginx applies before passing a client's id on (nginx/nginx.conf.template).
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")

Handler = Callable[[HttpRequest], HttpResponseBase]


def app_server_name(environ: dict) -> str:
    """Read the server from the WSGI environ itself, so the header cannot lie about it."""
    if "uwsgi.version" in environ:
        return "uwsgi"
    if str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn"):
        return "gunicorn"
    return "unknown"


class ProxyHeadersMiddleware:
    """Make REMOTE_ADDR the client's address under both servers.

    uWSGI gets the client's address from nginx's uwsgi_params; gunicorn sees nginx's.
    nginx overwrites X-Forwarded-For with the one peer it saw (never appends a
    client-sent value), so that header is the client's address and safe to use.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        forwarded_for = request.META.get("HTTP_X_FORWARDED_FOR")
        if forwarded_for:
            request.META["REMOTE_ADDR"] = forwarded_for.strip()
        return self.get_response(request)


class RequestIdFilter(logging.Filter):
    """Stamp every log record with the id of the request being served (settings.LOGGING)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class RequestIdMiddleware:
    """Carry nginx's request id through the app's logs and label the response.

    The one access log line per request comes from nginx and the app server, both of
    which log this id too; the app adds it to whatever it logs itself.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        # Not reset afterwards: Django logs a 4xx/5xx after the middleware returns. The next
        # request on this thread sets its own id before anything can log.
        current_request_id.set(request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        response["X-App-Server"] = app_server_name(request.META)
        response["X-App-Instance"] = settings.APP_INSTANCE
        return response


class DatabaseUnavailableMiddleware:
    """A database that cannot be reached (stopped, restarting, a broken connection) answers 503
    with a short JSON body at once, which clients and nginx treat as "try again", instead of
    Django's 500 page. The connection is dropped, so the next request connects anew."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponseBase | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logging.getLogger(__name__).warning("database unavailable: %s", exception)
        connection.close_if_unusable_or_obsolete()
        response = JsonResponse({"error": "database unavailable, try again"}, status=503)
        response["Retry-After"] = "1"
        return response
