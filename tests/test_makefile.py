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
        (("swap", "TO=nginx"), "TO must be one of: gunicorn uwsgi (got 'nginx')"),
        (("swap",), "TO must be one of: gunicorn uwsgi (got '')"),
        (("loadtest", "SCENARIO=soak"), "SCENARIO must be one of: throughput streaming swap (got 'soak')"),
        (("compare", "SCENARIO="), "SCENARIO must be one of: throughput streaming swap (got '')"),
        (("loadtest", "SCHEME=ftp"), "SCHEME must be one of: https http (got 'ftp')"),
        (("loadtest-ui", "SCENARIO=x"), "SCENARIO must be one of: throughput streaming swap (got 'x')"),
        (("bench", "BENCH_PROFILE=huge"), "BENCH_PROFILE must be one of: full tiny (got 'huge')"),
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
