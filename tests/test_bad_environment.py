"""A missing or invalid environment variable stops startup with a message naming it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from harness import APP_DIR, ROOT, SERVERS, VENV_BIN, local_stack, server_command


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60)


def django_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "manage.py", "check"], env)


@pytest.fixture
def env() -> dict[str, str]:
    return local_stack("gunicorn").env


def test_secret_key_is_required_in_production(env):
    del env["DJANGO_SECRET_KEY"]
    result = django_check(env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_development_mode_runs_without_a_secret_key(env):
    del env["DJANGO_SECRET_KEY"]
    env["DJANGO_ENV"] = "development"
    assert django_check(env).returncode == 0


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DJANGO_ENV", "staging", "DJANGO_ENV must be one of production, development"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG must be one of"),
        ("MAX_BODY_MB", "ten", "MAX_BODY_MB must be an integer"),
        ("DB_CONN_MAX_AGE", "-5", "DB_CONN_MAX_AGE must be between"),
        ("DB_CONNECTIONS", "pgbouncer", "DB_CONNECTIONS must be one of persistent, pool"),
        ("APP_WORKER_MODEL", "asyncio", "APP_WORKER_MODEL must be one of threads, gevent"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
        ("ALLOWED_HOSTS", " , ", "ALLOWED_HOSTS must list at least one value"),
    ],
)
def test_invalid_django_setting_is_named(env, name, value, expected):
    env[name] = value
    result = django_check(env)
    assert result.returncode != 0
    assert expected in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("APP_WORKERS", "abc", "APP_WORKERS must be an integer"),
        ("APP_THREADS", "0", "APP_THREADS must be between 1 and 256"),
        ("APP_WORKER_MODEL", "eventlet", "APP_WORKER_MODEL must be one of threads, gevent"),
        ("APP_GREENLETS", "1", "APP_GREENLETS must be between 2 and 100000"),
        ("REQUEST_TIMEOUT", "", "REQUEST_TIMEOUT is required"),
        ("GRACEFUL_TIMEOUT", "1.5", "GRACEFUL_TIMEOUT must be an integer"),
        ("MAX_REQUESTS", "-1", "MAX_REQUESTS must be between"),
        ("APP_BIND", "", "APP_BIND is required"),
        ("APP_TRANSPORT", "ipc", "APP_TRANSPORT must be one of unix, tcp"),
        ("METRICS_BIND", "9200", "METRICS_BIND must be [host]:port, like :9200, got '9200'"),
        ("METRICS_BIND", ":http", "METRICS_BIND must be [host]:port"),
    ],
)
@pytest.mark.parametrize("server", SERVERS)
def test_invalid_server_setting_stops_both_servers(env, server, name, value, expected):
    env[name] = value
    # The container's entrypoint: gunicorn fails in gunicorn.conf.py, uWSGI before exec.
    result = run(server_command(server), env)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("APP_SERVER", "apache", "APP_SERVER must be one of: gunicorn, uwsgi"),
        ("REQUEST_TIMEOUT", "30s", "REQUEST_TIMEOUT must be a whole number"),
        ("MAX_BODY_MB", "", "MAX_BODY_MB must be a whole number"),
        ("ALLOWED_HOSTS", "*", "ALLOWED_HOSTS must list host names"),
        ("STATIC_ROOT", "", "STATIC_ROOT is required"),
        ("APP_TRANSPORT", "udp", "APP_TRANSPORT must be one of: unix, tcp (got 'udp')"),
        ("NGINX_WORKER_PROCESSES", "two", "NGINX_WORKER_PROCESSES must be auto or a whole number from 1, got 'two'"),
        ("NGINX_WORKER_PROCESSES", "0", "NGINX_WORKER_PROCESSES must be auto or a whole number from 1, got '0'"),
        ("NGINX_WORKER_PROCESSES", "02", "NGINX_WORKER_PROCESSES must be auto or a whole number from 1, got '02'"),
    ],
)
def test_invalid_nginx_setting_is_named(env, name, value, expected):
    env[name] = value
    result = run([str(ROOT / "nginx" / "render.sh")], env)
    assert result.returncode == 2
    assert expected in result.stderr


def test_uwsgi_binary_is_the_locked_one():
    # The harness runs the venv's uWSGI, built from the hash-locked requirements.
    version = subprocess.run([str(VENV_BIN / "uwsgi"), "--version"], capture_output=True, text=True)
    locked = (ROOT / "uwsgi" / "requirements.txt").read_text()
    assert f"uwsgi=={version.stdout.strip()}" in locked


def test_an_unreachable_database_stops_startup_naming_it_without_the_password(env):
    env["DATABASE_URL"] = "postgres://app:s3cret-pw@127.0.0.1:1/app"
    result = run([sys.executable, "manage.py", "prepare_db"], env)
    assert result.returncode != 0
    assert "cannot connect to the database app@127.0.0.1:1/app (DATABASE_URL, or DATABASE=postgres)" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_a_database_that_never_answers_is_waited_for_db_wait_seconds_then_named(env):
    # Swarm starts services in no order: a replica waits for PostgreSQL (docker-swarm.yml), boundedly.
    env |= {"DATABASE_URL": "postgres://app:s3cret-pw@127.0.0.1:1/app", "DB_WAIT_SECONDS": "3"}
    started = time.monotonic()
    result = run([sys.executable, "manage.py", "prepare_db"], env)
    assert result.returncode != 0
    assert time.monotonic() - started >= 3
    assert "the database does not answer yet; waiting up to 3 s" in result.stdout
    assert "cannot connect to the database app@127.0.0.1:1/app" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_persistent_postgres_connections_are_refused_under_gevent(env):
    env |= {"APP_WORKER_MODEL": "gevent", "DB_CONNECTIONS": "persistent"}
    env["DATABASE_URL"] = "postgres://app:secret-value@db.invalid:5432/app"
    result = django_check(env)
    assert result.returncode != 0
    assert "DB_CONNECTIONS=persistent cannot be used with APP_WORKER_MODEL=gevent" in result.stderr
    assert "secret-value" not in result.stderr


@pytest.mark.parametrize("server", SERVERS)
def test_metrics_without_a_directory_for_them_stop_both_servers(env, server):
    env["METRICS_BIND"] = ":9200"
    env["PROMETHEUS_MULTIPROC_DIR"] = ""
    result = run(server_command(server), env)
    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR (a directory for every worker's metrics files) is required" in result.stderr
