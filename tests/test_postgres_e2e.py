"""DATABASE=postgres on the real compose stack: both servers on a real PostgreSQL 17 container,
connections bounded, migrations run once when replicas start together, the container hardened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from compose_stack import ComposeStack, build_images, compose_stack, docker_available, ensure_secret_file
from harness import ROOT, SERVERS, read_dotenv

pytestmark = pytest.mark.e2e

DOTENV = read_dotenv()
ENDPOINTS = ["/", "/plaintext", "/json", "/db", "/queries?n=5", "/readyz"]


@pytest.fixture(scope="module")
def images() -> None:
    problem = docker_available()
    if problem:
        pytest.fail(f"the e2e tests need Docker: {problem} (make test-fast leaves them out)")
    ensure_secret_file()
    build_images()


@pytest.fixture(scope="module", params=SERVERS)
def stack(request: pytest.FixtureRequest, images: None) -> Iterator[ComposeStack]:
    running = compose_stack(request.param)
    running.overrides["DATABASE"] = "postgres"
    try:
        done = running.make("up")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        yield running
    finally:
        running.down("--volumes")


def psql(stack: ComposeStack, sql: str) -> str:
    done = stack.compose(
        "exec", "-T", "postgres", "psql", "--host=/tmp", "--username=app", "--dbname=app", "-At", "-c", sql
    )
    return done.stdout.strip()


def test_every_endpoint_answers_from_postgresql(stack):
    for path in ENDPOINTS:
        answer = stack.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
        assert answer.headers["X-App-Server"] == stack.server
    assert psql(stack, "select count(*) from world") == "10000"
    # The app's own connections, never more than its threads (plus one for this psql).
    slots = int(DOTENV["APP_WORKERS"]) * int(DOTENV["APP_THREADS"])
    used = int(psql(stack, "select count(*) from pg_stat_activity where datname = 'app'"))
    assert 2 <= used <= slots + 1


def test_postgres_is_hardened_and_unpublished(stack):
    (container,) = stack.container_ids("postgres")
    info = stack.inspect(container)
    assert info["Config"]["User"] == "10004:10004"
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["HostConfig"]["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in info["HostConfig"]["SecurityOpt"]
    assert not info["HostConfig"]["PortBindings"]
    # The password is a file (a compose secret), never in the environment.
    assert not [env for env in info["Config"]["Env"] if env.startswith("POSTGRES_PASSWORD=")]
    assert psql(stack, "show password_encryption") == "scram-sha-256"
    assert psql(stack, "show data_checksums") == "on"


def test_replicas_starting_together_on_a_new_database_migrate_and_seed_once(images):
    fresh = compose_stack("gunicorn")
    fresh.overrides["DATABASE"] = "postgres"
    try:
        fresh.up("--scale", "gunicorn=3")
        logs = fresh.compose("logs", "gunicorn").stdout
        assert logs.count("prepare_db: 0 rows existed, 10000 added") == 1, logs[-3000:]
        assert logs.count("prepare_db: 10000 rows existed, 0 added") == 2, logs[-3000:]
    finally:
        fresh.down("--volumes")


def test_the_password_never_reaches_the_logs(stack):
    password = (ROOT / ".secrets" / "postgres_password").read_text().strip()
    assert password not in stack.compose("logs").stdout


def test_db_backup_and_restore_bring_back_the_data(stack, tmp_path):
    dump = tmp_path / "app.dump"
    before = psql(stack, "select random_number from world where id = 1")
    backup = stack.make("db-backup", f"BACKUP={dump}")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert dump.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    psql(stack, "update world set random_number = -1 where id = 1")
    psql(stack, "delete from world where id = 2")
    restore = stack.make("db-restore", f"BACKUP={dump}")
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert psql(stack, "select random_number from world where id = 1") == before
    assert psql(stack, "select count(*) from world") == "10000"
    assert stack.get("/db").status_code == 200  # the app goes on serving from the restored tables
    missing = stack.make("db-restore", f"BACKUP={tmp_path / 'nothing.dump'}")
    assert missing.returncode != 0
    assert "no such dump" in missing.stderr
