"""The Makefile refuses values it does not know, listing the ones it does, before doing anything."""

from __future__ import annotations

import re
import subprocess

import pytest
from harness import ROOT


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("up", "APP_SERVER=apache"), "APP_SERVER must be one of: gunicorn uwsgi (got 'apache')"),
        (("up", "APP_SERVER=gunicorn uwsgi"), "APP_SERVER must be one of: gunicorn uwsgi (got 'gunicorn uwsgi')"),
        (("up", "DATABASE=mysql"), "DATABASE must be one of: sqlite postgres (got 'mysql')"),
        (("up", "MONITORING=yes"), "MONITORING must be one of: 0 1 (got 'yes')"),
        (("swap", "TO=nginx"), "TO must be one of: gunicorn uwsgi (got 'nginx')"),
        (("swap",), "TO must be one of: gunicorn uwsgi (got '')"),
        (("loadtest", "SCENARIO=soak"), "SCENARIO must be one of: throughput streaming swap streams (got 'soak')"),
        (("compare", "SCENARIO="), "SCENARIO must be one of: throughput streaming swap streams (got '')"),
        (("loadtest", "SCHEME=ftp"), "SCHEME must be one of: https http (got 'ftp')"),
        (("loadtest-ui", "SCENARIO=x"), "SCENARIO must be one of: throughput streaming swap streams (got 'x')"),
        (("bench", "BENCH_PROFILE=huge"), "BENCH_PROFILE must be one of: full tiny (got 'huge')"),
        (("scale",), "usage: make scale REPLICAS=N (a whole number, at least 1)"),
        (("scale", "REPLICAS=two"), "usage: make scale REPLICAS=N (a whole number, at least 1)"),
        # Refused before docker runs: .env's 2 x 4 per replica, PostgreSQL's max_connections of 100.
        (("scale", "REPLICAS=12", "DATABASE=postgres"), "at most 11 replicas of 2 x 4 fit"),
        (("scale", "REPLICAS=2", "DATABASE=postgres", "APP_THREADS=0"), "APP_THREADS must be a whole number"),
    ],
)
def test_a_wrong_value_lists_the_allowed_ones(args, message):
    done = make(*args)
    assert done.returncode != 0
    assert message in done.stderr


def test_help_is_the_default_and_lists_every_target_and_variable():
    done = make()
    assert done.returncode == 0
    targets = re.findall(r"^([a-z-]+):.*## ", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert len(targets) > 10
    for target in targets:
        assert f"  {target} " in done.stdout, target
    for line in (ROOT / ".env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            assert line.split("=")[0] in done.stdout


def test_the_makefile_knows_the_same_scenarios_as_the_runner():
    import run  # loadtest/run.py

    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("SCENARIOS :="))
    assert line.split(":=")[1].split() == list(run.SCENARIOS)


def test_the_makefile_knows_the_same_bench_profiles_as_the_bench():
    import bench  # loadtest/bench/bench.py

    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("BENCH_PROFILES :="))
    assert line.split(":=")[1].split() == list(bench.PROFILES)


def test_scale_fits_replicas_in_max_connections_with_room_for_a_swap_and_a_person():
    import scale  # scripts/scale.py

    assert scale.max_connections() == 100  # postgres/postgresql.conf, the one home of the figure
    # 11 x 8 connections, 8 more for a swap's second server, 4 for psql and backups: 100.
    assert scale.check(11, 2, 4, 100) is None
    refused = scale.check(12, 2, 4, 100)
    assert refused is not None
    assert "12 replicas would need up to 108 PostgreSQL connections" in refused
    assert scale.most_replicas(2 * 4, 100) == 11
    assert scale.most_replicas(64, 100) == 0
