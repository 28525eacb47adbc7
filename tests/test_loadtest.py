"""Short, real Locust runs against nginx + each server on loopback, through loadtest/run.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ROOT, buffering_nginx

RUN = [sys.executable, str(ROOT / "loadtest" / "run.py")]


def run_scenario(base_url: str, results: Path, scenario: str, *extra: str) -> tuple[int, dict, Path, str]:
    done = subprocess.run(
        [*RUN, scenario, "--host", base_url, "--results-dir", str(results), *extra],
        capture_output=True,
        text=True,
        timeout=90,
    )
    runs = sorted(path for path in results.iterdir() if not path.name.startswith("."))
    assert runs, done.stdout + done.stderr
    summary = json.loads((runs[-1] / "summary.json").read_text())
    return done.returncode, summary, runs[-1], done.stdout


def test_throughput_run_writes_its_files_and_passes(stack, tmp_path):
    code, summary, out, console = run_scenario(
        stack.base_url, tmp_path, "throughput", "--users", "8", "--duration", "6s", "--warmup", "1s"
    )
    assert code == 0, console
    assert summary["warmup_s"] == 1.0
    assert out.name.endswith(f"-{stack.server}-throughput")
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "locust.html"):
        assert (out / name).stat().st_size > 0, name
    assert list(out.glob("requests-*.csv"))
    assert summary["servers"] == {stack.server: summary["requests"]}
    assert summary["requests"] > 100
    assert summary["failures"] == 0
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    assert summary["generator"]["cpu_max_percent"] is not None
    assert isinstance(summary["valid"], bool)
    assert set(summary["by_name"]) == {"/plaintext", "/json", "/db", "/queries?n=20"}
    assert "req/s" in console


def test_streaming_run_reports_chunk_timings(stack, tmp_path):
    code, summary, _, console = run_scenario(stack.base_url, tmp_path, "streaming", "--users", "4", "--duration", "6s")
    assert code == 0, console
    assert summary["failures"] == 0
    names = set(summary["by_name"])
    for metric in ("time to headers", "time to first chunk", "time to last chunk", "largest chunk gap"):
        assert f"/stream {metric}" in names
        assert f"/events {metric}" in names
    # Four chunks 250 ms apart: the last arrives about 750 ms after the first.
    assert summary["by_name"]["/stream time to last chunk"]["p50_ms"] >= 700


def test_streaming_run_fails_against_a_buffering_nginx(stack, tmp_path):
    with buffering_nginx(stack) as buffered:
        code, summary, _, console = run_scenario(
            buffered.base_url, tmp_path, "streaming", "--users", "2", "--duration", "5s"
        )
    assert code == 1, console
    assert summary["failures"] > 0
    assert any(reason.startswith("buffering: first chunk arrived") for reason in summary["failure_reasons"])
    assert "THRESHOLD FAILED: fail ratio" in console


def test_a_threshold_breach_gives_a_non_zero_exit(stack, tmp_path):
    code, summary, _, console = run_scenario(
        stack.base_url, tmp_path, "throughput", "--users", "2", "--duration", "3s", "--max-p95-ms", "0.001"
    )
    assert code == 1
    assert summary["thresholds"]["breaches"] == [f"p95 {summary['p95_ms']} ms > 0.001 ms"]
    assert "THRESHOLD FAILED: p95" in console


def test_an_unknown_scenario_lists_the_known_ones(tmp_path):
    done = subprocess.run([*RUN, "nope", "--host", "http://127.0.0.1:9"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "known scenarios: throughput, streaming" in done.stderr


@pytest.mark.parametrize(("option", "duration"), [("--duration", "ten"), ("--duration", "5x"), ("--warmup", "1x")])
def test_a_bad_duration_is_refused(option, duration):
    done = subprocess.run(
        [*RUN, "throughput", "--host", "http://127.0.0.1:9", option, duration],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "a duration like 20s" in done.stderr
