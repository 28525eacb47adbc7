"""Migrate and seed the database, safely when several containers start at once."""

from __future__ import annotations

import fcntl
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection, transaction

from stack.models import World
from stack.views import WORLD_ROWS

# Any fixed 64-bit number: the PostgreSQL advisory lock all replicas agree on.
PG_LOCK_KEY = 5_120_826_071


@contextmanager
def exclusive_setup_lock() -> Iterator[None]:
    """Serialise migrate+seed across processes: a file lock for SQLite, an advisory lock for PostgreSQL."""
    if connection.vendor == "sqlite":
        lock_path = Path(connection.settings_dict["NAME"]).with_suffix(".setup.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield
    elif connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [PG_LOCK_KEY])
            try:
                yield
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [PG_LOCK_KEY])
    else:
        yield


class Command(BaseCommand):
    help = "Apply migrations and seed the world table; does nothing that is already done."

    def handle(self, *args: object, **options: object) -> None:
        try:
            self.wait_for_database(settings.DB_WAIT_SECONDS)
        except OperationalError as error:
            # The driver's message (refused, unknown host, password authentication failed) never
            # holds the password; the database is named by its parts, without it.
            db = settings.DATABASES["default"]
            where = f"{db.get('USER') or '?'}@{db.get('HOST') or '?'}:{db.get('PORT') or 5432}/{db.get('NAME')}"
            raise CommandError(
                f"cannot connect to the database {where} (DATABASE_URL, or DATABASE=postgres): {error}"
            ) from None
        with exclusive_setup_lock():
            call_command("migrate", interactive=False, verbosity=0)
            existing = set(World.objects.values_list("id", flat=True))
            missing = [i for i in range(1, WORLD_ROWS + 1) if i not in existing]
            if missing:
                with transaction.atomic():
                    World.objects.bulk_create(
                        [World(id=i, random_number=random.randint(1, 10_000)) for i in missing],
                        batch_size=1000,
                    )
            self.stdout.write(f"prepare_db: {WORLD_ROWS - len(missing)} rows existed, {len(missing)} added")

    def wait_for_database(self, seconds: int) -> None:
        """Connect, trying again once a second for up to `seconds` (DB_WAIT_SECONDS); the last
        error is raised."""
        deadline = time.monotonic() + seconds
        waited = False
        while True:
            try:
                connection.ensure_connection()
                return
            except OperationalError:
                if time.monotonic() >= deadline:
                    raise
                if not waited:
                    self.stdout.write(f"prepare_db: the database does not answer yet; waiting up to {seconds} s")
                    waited = True
                time.sleep(1)
