"""The endpoints: TechEmpower-style fixed bodies, database reads, streams, and probes."""

from __future__ import annotations

import hashlib
import json
import platform
import random
import re
import time
from collections.abc import Callable, Iterator
from functools import wraps

import django
from django.conf import settings
from django.db import connection
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from stack.middleware import app_server_name
from stack.models import Item, World

WORLD_ROWS = 10_000
# Streams stay well inside the default 30 s REQUEST_TIMEOUT budget. /slow is bounded by
# settings.SLOW_MAX_MS, which a drill raises to exercise the timeout path.
MAX_STREAM_MS = 20_000
UPLOAD_READ_BYTES = 64 * 1024


class BadParameter(ValueError):
    pass


def int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"{name} must be between {low} and {high}, got {value}")
    return value


def json_error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def rejects_bad_parameters(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        try:
            return view(request, *args, **kwargs)
        except BadParameter as error:
            return json_error(str(error), 400)

    return wrapper


def unbuffered(response: StreamingHttpResponse) -> StreamingHttpResponse:
    # nginx honours this per response: buffering stays on for everything else.
    response["X-Accel-Buffering"] = "no"
    response["Cache-Control"] = "no-cache"
    return response


def paced(count: int, interval_s: float) -> Iterator[tuple[int, float]]:
    """Yield (seq, send time) on a fixed schedule from the first item, so delays don't drift."""
    start = time.monotonic()
    for seq in range(count):
        delay = start + seq * interval_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield seq, time.time()


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "stack/index.html",
        {
            "app_server": app_server_name(request.META),
            "instance": settings.APP_INSTANCE,
            "python": platform.python_version(),
            "django": django.get_version(),
        },
    )


@require_GET
def plaintext(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"Hello, World!", content_type="text/plain")


@require_GET
def json_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"message": "Hello, World!"})


def world_row(row: World) -> dict[str, int]:
    return {"id": row.id, "randomNumber": row.random_number}


@require_GET
def db(request: HttpRequest) -> JsonResponse:
    return JsonResponse(world_row(World.objects.get(id=random.randint(1, WORLD_ROWS))))


@require_GET
@rejects_bad_parameters
def queries(request: HttpRequest) -> JsonResponse:
    count = int_param(request, "n", 1, 1, 500)
    ids = [random.randint(1, WORLD_ROWS) for _ in range(count)]
    # One query per row on purpose: this endpoint measures round trips, as TechEmpower's does.
    rows = [world_row(World.objects.get(id=row_id)) for row_id in ids]
    return JsonResponse(rows, safe=False)


@require_GET
@rejects_bad_parameters
def stream(request: HttpRequest) -> HttpResponseBase:
    chunks = int_param(request, "chunks", 4, 1, 1000)
    interval_ms = int_param(request, "interval_ms", 500, 0, 5000)
    size = int_param(request, "size", 64, 32, 65536)
    if chunks * interval_ms > MAX_STREAM_MS:
        raise BadParameter(f"chunks * interval_ms must be at most {MAX_STREAM_MS}")

    def body() -> Iterator[bytes]:
        for seq, sent_at in paced(chunks, interval_ms / 1000):
            # Each chunk carries its send time, so a client can measure what held it back.
            line = f"{seq} {sent_at:.6f} "
            yield (line + "." * (size - len(line) - 1) + "\n").encode()

    return unbuffered(StreamingHttpResponse(body(), content_type="text/plain; charset=utf-8"))


@require_GET
@rejects_bad_parameters
def events(request: HttpRequest) -> HttpResponseBase:
    count = int_param(request, "count", 5, 1, 1000)
    interval_ms = int_param(request, "interval_ms", 1000, 0, 5000)
    if count * interval_ms > MAX_STREAM_MS:
        raise BadParameter(f"count * interval_ms must be at most {MAX_STREAM_MS}")

    def body() -> Iterator[bytes]:
        for seq, sent_at in paced(count, interval_ms / 1000):
            data = json.dumps({"seq": seq, "sent_at": round(sent_at, 6)})
            yield f"id: {seq}\nevent: tick\ndata: {data}\n\n".encode()

    return unbuffered(StreamingHttpResponse(body(), content_type="text/event-stream"))


@require_GET
@rejects_bad_parameters
def slow(request: HttpRequest) -> JsonResponse:
    ms = int_param(request, "ms", 1000, 0, 3_600_000)
    # cpu=1 computes instead of sleeping: under gevent, a request that never yields to the others.
    cpu = int_param(request, "cpu", 0, 0, 1)
    if ms > settings.SLOW_MAX_MS:
        raise BadParameter(f"ms must be at most SLOW_MAX_MS={settings.SLOW_MAX_MS}, got {ms}")
    if cpu:
        deadline = time.monotonic() + ms / 1000
        while time.monotonic() < deadline:
            pass
    else:
        time.sleep(ms / 1000)
    return JsonResponse({"slept_ms": ms})


@csrf_exempt  # a machine endpoint with no cookies or session: nothing for CSRF to protect
@require_POST
def upload(request: HttpRequest) -> JsonResponse:
    limit = settings.MAX_BODY_MB * 1024 * 1024
    digest = hashlib.sha256()
    size = 0
    # Read in pieces: the body never sits in memory whole, whatever its size.
    while chunk := request.read(UPLOAD_READ_BYTES):
        size += len(chunk)
        if size > limit:
            return json_error(f"body exceeds MAX_BODY_MB={settings.MAX_BODY_MB}", 413)
        digest.update(chunk)
    return JsonResponse({"bytes": size, "sha256": digest.hexdigest()})


ITEM_KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")


@csrf_exempt  # a machine endpoint with no cookies or session: nothing for CSRF to protect
@require_POST
def items(request: HttpRequest) -> JsonResponse:
    """Store one row per request: {"key": "..."} gives 201 with the row, once committed. The same key
    again gives 200 with the row already stored, so a client may retry a write it is unsure of."""
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        return json_error('the body must be JSON: {"key": "..."}', 400)
    key = body.get("key") if isinstance(body, dict) else None
    if not isinstance(key, str) or not ITEM_KEY.fullmatch(key):
        return json_error("key must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'", 400)
    item, created = Item.objects.get_or_create(key=key)
    return JsonResponse({"id": item.id, "key": item.key, "created": created}, status=201 if created else 200)


@csrf_exempt  # as /upload: no cookies, nothing for CSRF to protect
@require_http_methods(["GET", "POST"])
def request_info(request: HttpRequest) -> JsonResponse:
    """What the app sees of a request, so the two servers can be compared field by field. It also
    sets the CSRF cookie, so tests can see the cookie flags the settings ask for."""
    digest = hashlib.sha256()
    size = 0
    while chunk := request.read(UPLOAD_READ_BYTES):
        size += len(chunk)
        digest.update(chunk)
    return JsonResponse(
        {
            "method": request.method,
            "scheme": request.scheme,
            "is_secure": request.is_secure(),
            "host": request.get_host(),
            "absolute_uri": request.build_absolute_uri(),
            "csrf_token_set": bool(get_token(request)),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "path": request.path,
            "query": request.GET.dict(),
            "x_forwarded_for": request.META.get("HTTP_X_FORWARDED_FOR"),
            "x_forwarded_proto": request.META.get("HTTP_X_FORWARDED_PROTO"),
            "content_type": request.content_type,
            "body_bytes": size,
            "body_sha256": digest.hexdigest(),
        }
    )


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM world LIMIT 1")
            seeded = cursor.fetchone() is not None
    except Exception as error:  # any database failure means not ready, whatever the backend
        return JsonResponse({"status": "unavailable", "error": type(error).__name__}, status=503)
    if not seeded:
        return JsonResponse({"status": "unavailable", "error": "world table is empty"}, status=503)
    return JsonResponse({"status": "ok"})
