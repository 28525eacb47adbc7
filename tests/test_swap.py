"""Live swap between gunicorn and uWSGI under load, on the local-process harness.

The swaps run here, in the test, at set moments, while loadtest/run.py keeps a steady
Locust load on nginx and reports the swap windows apart from the steady state.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from harness import MODELS, ROOT, local_stack


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("first", ["gunicorn", "uwsgi"])
def test_swapping_there_and_back_under_load_loses_nothing(first, model, tmp_path):
    stack = local_stack(first, APP_WORKER_MODEL=model).start()
    other = "uwsgi" if first == "gunicorn" else "gunicorn"
    events = tmp_path / "swap-events.jsonl"
    errors: list[BaseException] = []

    def swap_there_and_back(begin: float) -> None:
        try:
            for at, target in ((7, other), (16, first)):
                time.sleep(max(0.0, begin + at - time.time()))
                stack.swap(target, events)
        except BaseException as error:  # reported by the test below, not lost in the thread
            errors.append(error)

    try:
        swapper = threading.Thread(target=swap_there_and_back, args=(time.time(),))
        swapper.start()
        done = subprocess.run(
            [sys.executable, str(ROOT / "loadtest" / "run.py"), "swap", "--host", stack.base_url,
             "--users", "8", "--duration", "26s", "--results-dir", str(tmp_path),
             "--swap-command", "", "--swap-events", str(events)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        swapper.join(timeout=90)
    finally:
        stack.stop()
    assert not errors, errors
    print(done.stdout[done.stdout.find("swap against") :])
    (result,) = tmp_path.glob("*-swap")
    summary = json.loads((result / "summary.json").read_text())
    assert [swap["to"] for swap in summary["swaps"]] == [other, first]
    assert all({"start", "cutover", "done"} <= set(swap) for swap in summary["swaps"])
    phases = summary["phases"]
    assert summary["failures"] == 0, summary["failure_reasons"]
    assert phases["steady"]["non_2xx"] == phases["swap"]["non_2xx"] == 0
    assert set(phases["swap"]["servers"]) == {"gunicorn", "uwsgi"}  # both really served
    ratio = phases["swap"]["p99_ms"] / phases["steady"]["p99_ms"]
    print(f"{first} {model}: p99 during the swaps {ratio:.2f} x the steady p99")
    assert ratio <= 3
    assert done.returncode == 0, done.stdout + done.stderr
