"""Short, real Locust runs against nginx + each server on loopback, through loadtest/run.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import MODELS, ROOT, SERVERS, buffering_nginx, local_stack

RUN = [sys.executable, str(ROOT / "loadtest" / "run.py")]


def run_scenario(
    base_url: str, results: Path, scenario: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, dict, Path, str]:
    done = subprocess.run(
        [*RUN, scenario, "--host", base_url, "--results-dir", str(results), *extra],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
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


# The small version of the streams scenario: one step of this many event streams, under each model.
# Under gevent far more than threads could hold. Under threads, what one worker's 4 threads hold
# beside the probe's request: gunicorn's workers do not share connections evenly (docs/bench/report.md,
# "the busiest-worker column"), and with 6 streams on the shipped 2 x 4 threads one worker took 5 in
# a CI run, so one stream waited for a thread all run. `make bench` ramps until a bound breaks.
SMALL_STREAMS = {"gevent": 200, "threads": 3}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("server", SERVERS)
def test_streams_run_gets_every_event_on_time(server, model, tmp_path):
    clients = SMALL_STREAMS[model]
    stack = local_stack(server, APP_WORKER_MODEL=model).start()
    ramp = {"STREAMS_STEP": str(clients), "STREAMS_MAX": str(clients), "STREAMS_STEP_S": "15"}
    try:
        code, summary, _, console = run_scenario(stack.base_url, tmp_path, "streams", "--duration", "15s", env=ramp)
    finally:
        stack.stop()
    print(console[console.find("streams against") :])
    assert code == 0, console
    (step,) = summary["streams"]["steps"]
    assert step["clients"] == clients
    # Every client got its events (one a second, over the 10 s read), none late, no stream failed.
    assert step["events"] >= 9 * clients, console
    assert step["late"] == 0 and step["failed"] == 0, console
    assert step["max_lateness_ms"] <= summary["streams"]["late_ms"]


def test_stream_capacity_is_the_last_step_before_a_bound_broke(monkeypatch):
    import stream_capacity  # loadtest/stream_capacity.py

    for name, value in (("STREAMS_STEP", "100"), ("STREAMS_STEP_S", "10"), ("STREAMS_MAX", "400")):
        monkeypatch.setenv(name, value)
    begin = 1000.0

    def row(at: float, name: str, ms: float, failed: str = "0") -> dict[str, str]:
        return {"start": str(begin + at), "name": name, "response_time_ms": str(ms), "failed": failed}

    lateness, probe = stream_capacity.LATENESS, stream_capacity.PROBE
    rows = [row(1, lateness, 900), row(11, lateness, 900)]  # clients still connecting: not read
    rows += [row(at, lateness, 20) for at in (6, 7, 8)] + [row(at, probe, 5) for at in (6, 7)]
    rows += [row(at, lateness, 40) for at in (16, 17)] + [row(at, probe, 9) for at in (16, 17)]
    rows += [row(26, lateness, 200, "1"), row(27, lateness, 30), row(26, probe, 8)]
    rows += [row(36, lateness, 30), row(36, probe, 8)]  # on time again, but after a broken step
    result = stream_capacity.capacity(rows, begin)
    assert [step["clients"] for step in result["steps"]] == [100, 200, 300, 400]
    assert [step["kept"] for step in result["steps"]] == [True, True, False, True]
    assert result["steps"][2]["late"] == 1 and result["steps"][2]["max_lateness_ms"] == 200
    assert result["capacity"] == 200
    slow_probe = [*rows[:9], row(16, lateness, 40), row(16, probe, 80)]
    assert stream_capacity.capacity(slow_probe, begin)["capacity"] == 100
