"""`make scale REPLICAS=N`: run N containers of the active app server, refused when PostgreSQL could
not hold their connections.

Each replica may hold APP_WORKERS x APP_THREADS connections (one per thread, DB_CONNECTIONS either
way). With DATABASE=postgres the stack's own server allows max_connections (postgres/postgresql.conf,
read from there) to all clients; N replicas must leave room for one more replica's worth, which
`make swap` needs while both servers run, and for RESERVED sessions of a person (psql, db-backup).
Past that, PostgreSQL would refuse the extra connections ("too many clients already") and those
requests would get 503s, so the scale is refused here, with the figures. With SQLite there is no
such limit; with DATABASE_URL the server is yours, and its max_connections is yours to check.

    python3 scripts/scale.py N
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from dotenv_file import setting as shared_setting

ROOT = Path(__file__).resolve().parent.parent
POSTGRESQL_CONF = ROOT / "postgres" / "postgresql.conf"
# Sessions kept free for a person: psql, make db-backup, make db-restore.
RESERVED = 4


def setting(name: str) -> str:
    """A shared setting: the shell's value wins over .env's, as in the Makefile and compose."""
    value = shared_setting(name)
    if value is None:
        raise SystemExit(f"scale: {name} is not set (.env or the environment)")
    return value


def whole(name: str) -> int:
    value = setting(name)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"scale: {name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def max_connections(conf: Path = POSTGRESQL_CONF) -> int:
    found = re.search(r"^\s*max_connections\s*=\s*(\d+)", conf.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f"scale: no max_connections line in {conf}")
    return int(found.group(1))


def most_replicas(per_replica: int, limit: int) -> int:
    """The most replicas whose connections, with one more replica's for a swap and RESERVED, fit in limit."""
    return max(0, (limit - RESERVED) // per_replica - 1)


def check(replicas: int, workers: int, threads: int, limit: int) -> str | None:
    """Why these replicas would not fit in PostgreSQL's max_connections; None when they fit."""
    per_replica = workers * threads
    needed = (replicas + 1) * per_replica + RESERVED
    if needed <= limit:
        return None
    return (
        f"scale: {replicas} replicas would need up to {needed} PostgreSQL connections: {replicas} x "
        f"{workers} workers x {threads} threads, one more replica's {per_replica} for `make swap`, and "
        f"{RESERVED} for psql and backups. max_connections is {limit} (postgres/postgresql.conf), so at "
        f"most {most_replicas(per_replica, limit)} replicas of {workers} x {threads} fit. Use fewer "
        "replicas or fewer threads, or raise max_connections (each connection costs PostgreSQL memory)."
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: make scale REPLICAS=N (a whole number, at least 1)", file=sys.stderr)
        return 2
    replicas = int(argv[0])
    server = setting("APP_SERVER")
    if setting("DATABASE") == "postgres" and not os.environ.get("DATABASE_URL"):
        why = check(replicas, whole("APP_WORKERS"), whole("APP_THREADS"), max_connections())
        if why:
            print(why, file=sys.stderr)
            return 1
    command = ["docker", "compose", "up", "--detach", "--no-recreate", "--wait", "--wait-timeout", "300"]
    done = subprocess.run([*command, "--scale", f"{server}={replicas}", server], cwd=ROOT, check=False)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
