"""Section 10 of `make bench`: the two worker models (APP_WORKER_MODEL: threads, gevent) under each
server, each through its own nginx as shipped.

Two questions. What does each model cost ordinary requests: wrk flat out on /plaintext and
/queries?n=20, the two models of one server in turns within a round, in reverse every other round.
And how many event streams does each hold: the Locust streams scenario (loadtest/locust_streams.py,
its ramp and reading in loadtest/stream_capacity.py) run in the load generator's container, ramped
per model by the profile's streams_ramps, read as the largest number of open streams at which every
event arrived within 150 ms of being sent and /plaintext kept p99 under 50 ms. Each capacity run
also records the CPU each container used, to show which side ran out first.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bench_targets import ENDPOINTS, HOST, MODEL_ENDPOINTS, MODELS, SERVERS, VIA_NGINX_MODEL, label

if TYPE_CHECKING:
    from bench import Bench

SECTION = "models"
# Locust's master and two worker processes: one process alone parses 3,000 streams' events late.
STREAMS_PROCESSES = 2
# The streams scenario in the load generator; its output goes to stderr, the summary to stdout.
# Arguments: URL, STREAMS_STEP, STREAMS_STEP_S, STREAMS_MAX, the Host header, seconds, processes.
STREAMS_SCRIPT = (
    'out=$(mktemp -d) && STREAMS_STEP="$2" STREAMS_STEP_S="$3" STREAMS_MAX="$4" LOADTEST_HOST_HEADER="$5" '
    'PYTHONPATH=/srv/bench python /srv/loadtest/run.py streams --host "$1" --duration "$6" --processes "$7" '
    '--results-dir "$out" >&2; cat "$out"/*/summary.json'
)


def models(bench: Bench) -> None:
    print("10. Worker models: ordinary requests and open event streams, threads against gevent", flush=True)
    for endpoint in MODEL_ENDPOINTS:
        path = ENDPOINTS[endpoint]
        for round_no, reverse in bench.rounds():
            for server in reversed(SERVERS) if reverse else SERVERS:
                for model in reversed(MODELS) if reverse else MODELS:
                    bench.wrk(
                        SECTION, label(server, model, endpoint), VIA_NGINX_MODEL[(server, model)] + path, round_no
                    )
    capacities: dict[str, dict] = {}
    bench.extra["stream_capacity"] = capacities
    ramps = dict(bench.profile.streams_ramps)
    for server in SERVERS:
        for model in MODELS:
            name = label(server, model, "streams")
            with bench.step(SECTION, name, what="streams"):
                capacities[f"{server} {model}"] = stream_capacity(bench, VIA_NGINX_MODEL[(server, model)], ramps[model])
                found = capacities[f"{server} {model}"]
                print(f"  {SECTION:<10} {name:<34} capacity {found['capacity']} open streams", flush=True)


def stream_capacity(bench: Bench, url: str, ramp: tuple[int, int, int]) -> dict:
    """One ramp of the streams scenario against url: its per-step reading, the capacity, the generator's
    CPU as run.py measured it, and the cores each container used over the whole run (Locust's start too)."""
    step, step_s, most = ramp
    seconds = most // step * step_s
    bench.focus(url)
    before = bench.cpu_reading(SECTION, url, None)
    argv = (url, str(step), str(step_s), str(most), HOST, f"{seconds}s", str(STREAMS_PROCESSES))
    started = time.monotonic()
    out = bench.containers.exec("loadgen", "sh", "-c", STREAMS_SCRIPT, "sh", *argv, timeout=seconds + 120)
    used = bench.cpu_used(before, SECTION, url, None)
    elapsed = time.monotonic() - started
    summary = json.loads(out)
    return {
        "url": url,
        "ramp": {"step": step, "step_s": step_s, "most": most},
        **summary["streams"],
        "generator": summary["generator"],
        "failure_reasons": summary["failure_reasons"],
        "services": {"app": bench.app_service(url), "nginx": urlsplit(url).hostname},
        "cpu_cores": {service: round(cpu_s / elapsed, 3) for service, cpu_s in used[0].items()} if used else {},
    }
