"""Django settings: production by default, every value from the environment.

Variables shared with nginx (ALLOWED_HOSTS, STATIC_ROOT, MAX_BODY_MB) are read
here and by nginx/render.sh under the same names, so each lives in one place.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import quote

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from stack import metrics
from stack.env import env_bool, env_choice, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# production refuses to start without a real secret; development is for a laptop.
DJANGO_ENV = env_choice("DJANGO_ENV", "production", ("production", "development"))
DEVELOPMENT = DJANGO_ENV == "development"

# From DJANGO_SECRET_KEY, or the file DJANGO_SECRET_KEY_FILE names (compose mounts a secret).
SECRET_KEY = env_secret("DJANGO_SECRET_KEY", "development-only-insecure-key" if DEVELOPMENT else None)
DEBUG = env_bool("DJANGO_DEBUG", False)
# nginx builds its server_name from the same variable and drops every other Host.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "stack",
]

MIDDLEWARE = [
    "stack.watchdog.RequestBudgetMiddleware",
    "stack.middleware.ProxyHeadersMiddleware",
    "stack.middleware.RequestIdMiddleware",
    "stack.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# With METRICS_BIND set: Django's time and database queries per view (app/stack/metrics.py),
# around everything but the request budget's watchdog.
if metrics.ENABLED:
    MIDDLEWARE.insert(1, "stack.metrics.ViewMetricsMiddleware")

ROOT_URLCONF = "stack.urls"
WSGI_APPLICATION = "stack.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

# DATABASE (.env) picks the database; DATABASE_URL, when set, names any other one.
DATABASE = env_choice("DATABASE", "sqlite", ("sqlite", "postgres"))
if os.environ.get("DATABASE_URL"):
    _database_url = env_str("DATABASE_URL", None)
elif DATABASE == "postgres":
    # The compose service: user and database `app`, the password from the secret file.
    _password = quote(env_secret("POSTGRES_PASSWORD", None), safe="")
    _database_url = f"postgres://app:{_password}@{env_str('POSTGRES_HOST', 'postgres')}:5432/app"
else:
    _database_url = f"sqlite:///{BASE_DIR / 'db.sqlite3'}" if DEVELOPMENT else "sqlite:////data/db.sqlite3"
# How Django holds PostgreSQL connections: `persistent`, one per thread kept for DB_CONN_MAX_AGE s,
# or `pool`, psycopg's pool of APP_THREADS per worker process that threads borrow per request. Under
# threads both hold workers x threads, and the pool ran at 0.97 of persistent's rate (median over
# both servers x 3 endpoints; docs/bench/report.md section 9), so persistent ships: no pool threads
# in each worker, and a connection a database restart broke is replaced by the next request, not
# after the pool's reconnect backoff (tests/test_postgres_e2e.py's outage drills print how long).
DB_CONNECTIONS = env_choice("DB_CONNECTIONS", "persistent", ("persistent", "pool"))
# Under gevent Django keeps its connections per greenlet, not per thread: persistent ones would be
# one per open connection (APP_GREENLETS per worker), so PostgreSQL gets the pool, always, and
# SQLite a connection per request.
APP_WORKER_MODEL = env_choice("APP_WORKER_MODEL", "threads", ("threads", "gevent"))
_postgres = _database_url.startswith(("postgres://", "postgresql://"))
_pooled = _postgres and (DB_CONNECTIONS == "pool" or APP_WORKER_MODEL == "gevent")
if APP_WORKER_MODEL == "gevent" and _postgres and os.environ.get("DB_CONNECTIONS") == "persistent":
    raise ImproperlyConfigured(
        "DB_CONNECTIONS=persistent cannot be used with APP_WORKER_MODEL=gevent: Django would keep a "
        "PostgreSQL connection per greenlet; leave DB_CONNECTIONS unset or set it to pool"
    )
_keep = 0 if _pooled or APP_WORKER_MODEL == "gevent" else env_int("DB_CONN_MAX_AGE", 60, 0, 86400)
DATABASES = {
    "default": dj_database_url.parse(
        _database_url,
        # Persistent connections save a connect per request (the pool refuses them: it does that itself).
        conn_max_age=_keep,
        # A connection is checked (a round trip) before a request reuses it, so a dead one is replaced.
        conn_health_checks=True,
    )
}
# How long `prepare_db` (each replica's start) waits for the database to answer before it stops
# naming it. 0 under compose, whose depends_on starts the app once PostgreSQL is healthy; swarm has
# no start order, so docker-swarm.yml sets it (docs/swarm.md, "Placement").
DB_WAIT_SECONDS = env_int("DB_WAIT_SECONDS", 0, 0, 600)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["OPTIONS"] = {
        # A database that does not answer costs a request 2 s, then a 503 (DatabaseUnavailable-
        # Middleware), not the whole request budget: libpq's default is to wait forever.
        "connect_timeout": 2,
    }
    if _pooled:
        _threads = env_int("APP_THREADS", None, 1, 256)
        DATABASES["default"]["OPTIONS"]["pool"] = {
            # One connection per thread of the process, opened at its first request: a thread never
            # waits for another's, and the total is the same workers x threads as persistent ones.
            # Under gevent, APP_THREADS connections that the worker's greenlets take turns with.
            "min_size": _threads,
            "max_size": _threads,
            # A request waits this long for a connection, then gets the 503, as connect_timeout above.
            "timeout": 2,
        }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers run alongside a writer across processes; NORMAL is safe with WAL.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        # Take the write lock at BEGIN, so concurrent writers wait on busy_timeout instead of failing.
        "transaction_mode": "IMMEDIATE",
        # Seconds a writer waits for the lock; longer than any write here takes.
        "timeout": 5,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

STATIC_URL = "/static/"
# collectstatic writes here and nginx serves it; the app never serves static files.
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles") if DEVELOPMENT else "/srv/static")
STORAGES = {
    # Content-hashed names let nginx send far-future cache headers safely.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

# The app servers' request budget (.env); unset outside them, which turns the watchdog off.
REQUEST_TIMEOUT = env_int("REQUEST_TIMEOUT", None, 1, 3600) if os.environ.get("REQUEST_TIMEOUT") else None

# The longest /slow may sleep (.env): drills need seconds, and a production stack gives no
# client a way to hold a thread for minutes (8 such requests fill the shipped 2 x 4).
SLOW_MAX_MS = env_int("SLOW_MAX_MS", 2000, 0, 3_600_000)

# nginx rejects larger bodies with 413 first; the app enforces the same cap for direct callers.
MAX_BODY_MB = env_int("MAX_BODY_MB", 10, 1, 1024)

# nginx terminates TLS and overwrites X-Forwarded-Proto on every request with the scheme the
# client used, so it can be trusted here, and is_secure() comes out the same under both servers.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# nginx owns both of these for every response, its own and the app's (nginx/nginx.conf.template):
# the redirect to https:// happens before a request reaches Python (W008), and nginx sends HSTS
# with HSTS_SECONDS on HTTPS responses (W004), so Django sends neither.
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Which container answered; scaled replicas differ only in this.
APP_INSTANCE = socket.gethostname()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "stack.middleware.RequestIdFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"}},
    # Containers log to stdout/stderr; the runtime collects it.
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
    },
}
