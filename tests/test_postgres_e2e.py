"""DATABASE=postgres on the real compose stack: both servers on a real PostgreSQL 17 container,
connections bounded, migrations run once when replicas start together, the container hardened."""

from __future__ import annotations

import itertools
import re
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from compose_stack import ComposeStack, compose_stack
from harness import ROOT, SERVERS, read_dotenv

pytestmark = pytest.mark.e2e

DOTENV = read_dotenv()
ENDPOINTS = ["/", "/plaintext", "/json", "/db", "/queries?n=5", "/readyz"]
SLOTS = int(DOTENV["APP_WORKERS"]) * int(DOTENV["APP_THREADS"])
# DB_CONNECTIONS' default (app/stack/settings.py), and the other way, tested once below.
SHIPPED_WAY = re.search(r'env_choice\("DB_CONNECTIONS", "(\w+)"', (ROOT / "app/stack/settings.py").read_text())[1]
# Answers of 200 in a row that count as every worker being back after an outage.
RECOVERED = 20
OTHER_WAY = next(way for way in ("persistent", "pool") if way != SHIPPED_WAY)


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
    used = int(psql(stack, "select count(*) from pg_stat_activity where datname = 'app'"))
    assert 2 <= used <= SLOTS + 1


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


def test_a_database_outage_is_a_fast_503_and_service_comes_back_without_an_app_restart(stack):
    outage_drill(stack)


def outage_drill(stack: ComposeStack) -> None:
    app_before = stack.container_ids(stack.server)
    stack.compose("--profile", "postgres", "stop", "postgres", timeout=120)
    try:
        started = time.monotonic()
        down = stack.get("/db", timeout=30)
        took = time.monotonic() - started
        assert down.status_code == 503
        assert down.json() == {"error": "database unavailable, try again"}
        assert took < 5, f"an outage took {took:.1f}s to answer"  # connect_timeout is 2 s
        wrote = stack.post_json("/items", {"key": f"outage-{stack.project}"})
        assert wrote.status_code == 503
    finally:
        stack.compose("--profile", "postgres", "start", "postgres", timeout=120)
    back = time.monotonic()
    # Recovered means every worker is back: each holds its own connections (or pool), and one 200
    # says only that the worker that answered it is. So: RECOVERED answers of 200 in a row.
    in_a_row = 0
    while in_a_row < RECOVERED:
        assert time.monotonic() < back + 60, "the app did not recover within 60 s of PostgreSQL's start"
        in_a_row = in_a_row + 1 if stack.get("/db").status_code == 200 else 0
        time.sleep(0.05 if in_a_row else 0.5)
    way = stack.overrides.get("DB_CONNECTIONS", SHIPPED_WAY)
    took = time.monotonic() - back
    print(f"{stack.server} {way}: {RECOVERED} /db in a row answered 200 {took:.1f} s after PostgreSQL started")
    assert stack.container_ids(stack.server) == app_before  # the same app containers, not restarted
    stored = stack.post_json("/items", {"key": f"after-{stack.project}"})
    assert stored.status_code == 201
    assert psql(stack, f"select count(*) from item where key = 'after-{stack.project}'") == "1"
    assert psql(stack, f"select count(*) from item where key = 'outage-{stack.project}'") == "0"


@pytest.mark.parametrize("server", SERVERS)
def test_the_other_way_of_holding_connections_bounds_them_and_survives_an_outage(images, server):
    """DB_CONNECTIONS, the way the stack does not ship (settings.py says why), still keeps its promises."""
    other = compose_stack(server)
    other.overrides |= {"DATABASE": "postgres", "DB_CONNECTIONS": OTHER_WAY}
    try:
        done = other.make("up")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        for path in ENDPOINTS:
            assert other.get(path).status_code == 200, path
        (container,) = other.container_ids(server)
        env = other.inspect(container)["Config"]["Env"]
        assert f"DB_CONNECTIONS={OTHER_WAY}" in env
        assert int(psql(other, "select count(*) from pg_stat_activity where datname = 'app'")) <= SLOTS + 1
        outage_drill(other)
    finally:
        other.down("--volumes")


class WriteLoad:
    """Threads storing one new key after another through nginx for a bounded time, keeping every
    key that got a 2xx, and how long each non-2xx answer took."""

    def __init__(self, stack: ComposeStack, threads: int, seconds: float) -> None:
        self.stack, self.deadline = stack, time.monotonic() + seconds
        self.stored: list[str] = []
        self.servers: set[str] = set()
        self.refused: list[tuple[int, float]] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]

    def run(self, thread: int) -> None:
        for sequence in itertools.count():
            if time.monotonic() > self.deadline:
                return
            key = f"w{thread}-{sequence}-{self.stack.project}"
            started = time.monotonic()
            try:
                answer = self.stack.post_json("/items", {"key": key})
            except requests.RequestException as error:
                self.errors.append(f"{key}: {error}")
                continue
            if answer.status_code in (200, 201):
                self.stored.append(key)
                self.servers.add(answer.headers.get("X-App-Server", "?"))
            else:
                self.refused.append((answer.status_code, time.monotonic() - started))
                time.sleep(0.2)

    def __enter__(self) -> WriteLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        if error is not None:
            self.deadline = time.monotonic()  # a failed step stops the writers at once
        for thread in self.threads:
            thread.join(timeout=120)


def assert_all_stored(stack: ComposeStack, keys: list[str]) -> None:
    assert keys, "no write succeeded"
    # In batches: one psql argument may hold 128 KiB (Linux's MAX_ARG_STRLEN), and a run can store more.
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        quoted = ",".join(f"'{key}'" for key in batch)
        assert psql(stack, f"select count(*) from item where key in ({quoted})") == str(len(batch))


def test_a_wrong_password_stops_startup_naming_the_database_not_the_password(stack):
    wrong = "not-the-password-" + stack.project
    url = f"postgres://app:{wrong}@postgres:5432/app"
    # A second container of the same service, started by hand with the wrong URL; the stack goes on.
    done = stack.compose(
        "run", "--rm", "--no-deps", "-e", f"DATABASE_URL={url}", stack.server, check=False, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-2000:]
    assert "cannot connect to the database app@postgres:5432/app (DATABASE_URL" in output, output[-2000:]
    assert "password authentication failed" in output, output[-2000:]
    assert wrong not in output
    assert stack.get("/db").status_code == 200


@pytest.mark.parametrize("outage", ["restart", "kill"])
def test_every_acknowledged_write_survives_a_postgres_restart_or_kill(stack, outage):
    with WriteLoad(stack, threads=4, seconds=25) as load:
        time.sleep(5)
        if outage == "restart":
            stack.compose("--profile", "postgres", "restart", "postgres", timeout=120)
        else:
            (container,) = stack.container_ids("postgres")
            subprocess.run(["docker", "kill", container], check=True, capture_output=True, timeout=60)
            time.sleep(3)
            stack.compose("--profile", "postgres", "start", "postgres", timeout=120)
    assert load.errors == []
    assert_all_stored(stack, load.stored)
    # Writes during the outage were refused at once with 503, never left hanging to the budget.
    assert {status for status, _ in load.refused} <= {503}
    assert all(took < 5 for _, took in load.refused), load.refused
    print(f"{outage}: {len(load.stored)} writes stored, {len(load.refused)} refused with 503 during the outage")


def test_make_swap_under_write_load_fails_nothing_and_loses_no_write(stack):
    """There and back, as `make swap` does for a user: the other server starts on the same PostgreSQL,
    nginx hands over, the old one drains its in-flight writes."""
    other = next(server for server in SERVERS if server != stack.server)
    with WriteLoad(stack, threads=4, seconds=300) as load:
        for target in (other, stack.server):
            time.sleep(3)
            done = stack.make("swap", f"TO={target}", timeout=240)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        time.sleep(3)
        load.deadline = time.monotonic()  # the writers stop after their current request
    assert load.errors == [] and load.refused == [], (load.errors[:5], load.refused[:5])
    assert load.servers == set(SERVERS)  # both really stored writes
    assert_all_stored(stack, load.stored)
    print(f"swap there and back: {len(load.stored)} writes stored, 0 failed")


@pytest.mark.parametrize("server", SERVERS)
def test_under_gevent_many_concurrent_writers_share_the_pool_and_every_write_is_stored(images, server):
    """Under gevent Django's connections are per greenlet: the pool (settings.py) is what keeps them
    to workers x APP_THREADS while five times that many clients write at once."""
    gevent = compose_stack(server)
    gevent.overrides |= {"DATABASE": "postgres", "APP_WORKER_MODEL": "gevent"}
    try:
        done = gevent.make("up")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        for path in ENDPOINTS:
            assert gevent.get(path).status_code == 200, path
        with WriteLoad(gevent, threads=5 * SLOTS, seconds=10) as load:
            time.sleep(5)
            held = int(psql(gevent, "select count(*) from pg_stat_activity where datname = 'app'"))
        assert load.errors == [] and load.refused == [], (load.errors[:5], load.refused[:5])
        assert_all_stored(gevent, load.stored)
        assert 1 <= held <= SLOTS + 1  # the pool's connections, and this psql
        print(f"{server} gevent: {len(load.stored)} writes from {5 * SLOTS} clients, {held - 1} connections")
    finally:
        gevent.down("--volumes")
