"""Section 9 of `make bench`: the same app on SQLite and on PostgreSQL, and the two ways Django can
hold PostgreSQL connections (DB_CONNECTIONS: persistent, one per thread; pool, psycopg's pool).

Each server straight (as section 2's direct figures: gunicorn's port, uWSGI's http-socket), one
container per database setting, the shipped workers and threads. Per endpoint and round, the three
settings of one server in turns, in reverse every other round. The endpoints: /db (one row by
primary key), /queries?n=20 (twenty), and POST /items (one new row per request, committed before
the answer: wrk_items.lua sends a key never used before).

After each PostgreSQL target's first run, the section also reads how many connections that container
holds in PostgreSQL (pg_stat_activity), to show that either setting keeps to workers x threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench_targets import DB_DIRECT, DB_ENDPOINTS, SERVERS, label

if TYPE_CHECKING:
    from bench import Bench

SECTION = "databases"
POSTGRES_SERVICE = "postgres"
# The connections one app container holds: sessions of user `app` from that container's address.
CONNECTIONS_SCRIPT = (
    'addr=$(getent hosts "$1" | cut -d" " -f1) && [ -n "$addr" ] && '
    "psql --host=/tmp --username=app --dbname=app --no-align --tuples-only --command "
    "\"SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND client_addr = '$addr'\""
)


def databases(bench: Bench) -> None:
    print("9. Databases: SQLite against PostgreSQL, persistent connections against a pool", flush=True)
    connections: dict[str, int] = {}
    bench.extra["db_connections"] = connections
    for endpoint in bench.profile.db_endpoints:
        path = DB_ENDPOINTS[endpoint]
        script = "wrk_items.lua" if endpoint == "items" else ""
        for round_no, reverse in bench.rounds():
            for server in reversed(SERVERS) if reverse else SERVERS:
                targets = [(db, base) for (srv, db), base in DB_DIRECT.items() if srv == server]
                for database, base in reversed(targets) if reverse else targets:
                    name = label(server, database, endpoint)
                    bench.wrk(SECTION, name, base + path, round_no, script=script)
                    service = base.split("//")[1].split(":")[0]
                    if database != "sqlite" and service not in connections:
                        with bench.step(SECTION, name, round_no, "connections"):
                            connections[service] = held_connections(bench, service)


def held_connections(bench: Bench, service: str) -> int:
    """How many PostgreSQL sessions the service's container holds now (its requests are over)."""
    bench.containers.focus({"loadgen", service, POSTGRES_SERVICE})
    out = bench.containers.exec(POSTGRES_SERVICE, "sh", "-c", CONNECTIONS_SCRIPT, "sh", service, timeout=30)
    return int(out.strip())
