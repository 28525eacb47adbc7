"""Sections 1-7 of `make bench`: what each measures, in which order. bench.py's Bench does the measuring
(wrk runs, probes, CPU readings, a failed step marked n/a); each section is a function of it.
Section 8 (HTTPS) is in bench_https.py.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import TYPE_CHECKING

import bench_nginx_cost
import report
from bench_containers import machine_busy_jiffies
from bench_targets import (
    DIRECT,
    ENDPOINTS,
    HELLO_DIRECT,
    HELLO_VIA_NGINX,
    HOST,
    METRICS_DIRECT,
    NAIVE_DIRECT,
    NAIVE_VIA_NGINX,
    NGINX_ONLY_HOST,
    PEERS,
    SEPARATE_CORES,
    SERVERS,
    SWEEP_MIX,
    VIA_NGINX,
    VIA_NGINX_TCP,
)

if TYPE_CHECKING:
    from bench import Bench, Run


def proxy_tax(bench: Bench) -> None:
    print("1. Proxy tax: /plaintext direct vs through nginx", flush=True)
    paths = {
        name: [("direct", DIRECT[name]), ("nginx", VIA_NGINX[name]), ("nginx-tcp", VIA_NGINX_TCP[name])]
        for name in SERVERS
    }
    paths["peer: gunicorn defaults"] = [("direct", NAIVE_DIRECT), ("nginx", NAIVE_VIA_NGINX)]
    for round_no, reverse in bench.rounds():
        for name, targets in paths.items():
            for how, base in reversed(targets) if reverse else targets:
                bench.wrk("proxy-tax", f"{name} {how}", base + "/plaintext", round_no)
    _proxy_tax_separate_cores(bench)


def _proxy_tax_separate_cores(bench: Bench) -> None:
    """The same pairs with nginx's CPU taken from cores the app server cannot use, as in production.

    The app server gets the first half of the cores, nginx and wrk the rest (`docker update
    --cpuset-cpus`), for its direct runs too: both sides of a pair have the same cores for the app.
    """
    cores = os.cpu_count() or 1
    half = cores // 2
    app, front = cpu_list(0, half - 1), cpu_list(half, cores - 1)
    if cores >= 2:
        bench.extra["separate_cores"] = {"app": app, "nginx": front}
    for server in SERVERS:
        name = f"{server}{SEPARATE_CORES}"
        with bench.step("proxy-tax", name, what="placement"):
            if cores < 2:
                raise RuntimeError("one core: nothing to put nginx on apart from the app server")
            cpus = {server: app, f"nginx-{server}": front, "loadgen": front}
            _separate_cores_pairs(bench, server, name, cpus, nginx_workers=cores - half)


def _separate_cores_pairs(bench: Bench, server: str, name: str, cpus: dict[str, str], nginx_workers: int) -> None:
    """One server's pairs with these services pinned, nginx with a worker per core of its own (as
    NGINX_WORKER_PROCESSES=auto starts it pinned); its shipped config and every core back after."""
    nginx, targets = f"nginx-{server}", [("direct", DIRECT[server]), ("nginx", VIA_NGINX[server])]
    bench.focus(VIA_NGINX[server])
    shipped = bench.containers.exec(nginx, "cat", bench_nginx_cost.CONF, timeout=30)
    one_per_core = bench_nginx_cost.substitute(r"^worker_processes \S+;", f"worker_processes {nginx_workers};")
    try:
        with bench.containers.pinned(cpus):
            bench_nginx_cost.load(bench, one_per_core(shipped), nginx)
            for round_no, reverse in bench.rounds():
                for how, base in reversed(targets) if reverse else targets:
                    bench.wrk("proxy-tax", f"{name} {how}", base + "/plaintext", round_no)
    finally:
        # The shipped config back, whatever failed: the sections after this one measure it.
        with bench.step("proxy-tax", name, what="the shipped config back"):
            bench.focus(VIA_NGINX[server])
            bench_nginx_cost.load(bench, shipped, nginx)


def cpu_list(first: int, last: int) -> str:
    """Cores first to last as cpuset lists them: "1", "0-3"."""
    return str(first) if first == last else f"{first}-{last}"


def metrics_cost(bench: Bench) -> None:
    print("11. What the app's metrics cost: /plaintext straight, metrics on against off", flush=True)
    for round_no, reverse in bench.rounds():
        for server in SERVERS:
            for state in ("off", "on") if reverse else ("on", "off"):
                bench.wrk(
                    "metrics", f"{server} metrics {state}", METRICS_DIRECT[(server, state)] + "/plaintext", round_no
                )


def servers(bench: Bench) -> None:
    print("2. gunicorn vs uWSGI through nginx", flush=True)
    for round_no, reverse in bench.rounds():
        for endpoint in bench.profile.server_endpoints:
            order = list(reversed(SERVERS)) if reverse else list(SERVERS)
            for server in order:
                bench.wrk("servers", f"{server} {endpoint}", VIA_NGINX[server] + ENDPOINTS[endpoint], round_no)


def peers(bench: Bench) -> None:
    print("3. Peers' configurations", flush=True)
    stacks = {f"ours: {s}": VIA_NGINX[s] for s in SERVERS} | PEERS
    for round_no, reverse in bench.rounds():
        for endpoint in bench.profile.peer_endpoints:
            items = list(stacks.items())
            for name, base in reversed(items) if reverse else items:
                bench.wrk("peers", f"{name} {endpoint}", base + ENDPOINTS[endpoint], round_no)
        for endpoint, rate in bench.profile.peer_paced_rps:
            items = list(stacks.items())
            for name, base in reversed(items) if reverse else items:
                label = f"{name} {endpoint}@{rate}"
                bench.wrk("peers-paced", label, base + ENDPOINTS[endpoint], round_no, pace_rps=rate)
    streams: dict[str, object] = {}
    bench.extra["concurrent_streams"] = {
        "clients": bench.profile.concurrent_streams,
        "path": bench.profile.concurrent_stream,
        "results": streams,
    }
    for name, base in stacks.items():
        with bench.step("streams", name, what="probe"):
            # Enough time for the slowest peer to serve every stream one after another.
            result = bench.probe(
                "concurrent",
                base + bench.profile.concurrent_stream,
                "--clients",
                str(bench.profile.concurrent_streams),
                "--probe-url",
                base + "/plaintext",
                "--seconds",
                "40",
                timeout=120,
            )
            streams[name] = result
            summary = report.concurrent_summary(result)
            print(
                f"  streams    {name:<34} first chunk p50 {summary['first_p50_ms']:7.0f} ms, "
                f"max {summary['first_max_ms']:7.0f} ms; /plaintext meanwhile p50 "
                f"{summary['probe_p50_ms']:7.1f} ms",
                flush=True,
            )


def ceilings(bench: Bench) -> None:
    print("4. Ceilings: nginx alone, a WSGI hello-world on each server", flush=True)
    targets = [("nginx return 200", VIA_NGINX["gunicorn"] + "/nginx-health", NGINX_ONLY_HOST)]
    for server in SERVERS:
        targets.append((f"{server} hello direct", HELLO_DIRECT[server] + "/", HOST))
        targets.append((f"{server} hello nginx", HELLO_VIA_NGINX[server] + "/", HOST))
    for round_no, reverse in bench.rounds():
        for label, url, host in reversed(targets) if reverse else targets:
            bench.wrk("ceilings", label, url, round_no, host=host)


def ttfb(bench: Bench) -> None:
    print("5. Streaming: time to first byte, through nginx minus direct", flush=True)
    path = f"/stream?chunks=2&interval_ms={bench.profile.stream_interval_ms}"
    pairs = {s: {"direct": DIRECT[s] + path, "nginx": VIA_NGINX[s] + path} for s in SERVERS}
    urls = [url for pair in pairs.values() for url in pair.values()]
    with bench.step("ttfb", what="probe"):
        result = bench.probe("ttfb", *urls, "--requests", str(bench.profile.ttfb_requests), timeout=600)
        ttfb = {"path": path, "interval_ms": bench.profile.stream_interval_ms, "urls": pairs, "results": result}
        bench.extra["ttfb"] = ttfb
        for server, d in report.ttfb_deltas(ttfb).items():
            print(
                f"  ttfb       {server:<10} direct p50 {d['direct']['p50']:.2f} ms, "
                f"nginx p50 {d['nginx']['p50']:.2f} ms",
                flush=True,
            )


def sweep(bench: Bench) -> None:
    print("6. Workers x threads sweep (mixed endpoints, through nginx)", flush=True)
    defaults = (int(bench.setting("APP_WORKERS")), int(bench.setting("APP_THREADS")))
    bench.extra["sweep_defaults"] = list(defaults)
    for server in SERVERS:
        scores: dict[tuple[int, int], float] = {}
        for workers, threads in bench.profile.sweep_grid:
            run = _sweep_point(bench, server, workers, threads, round_no=1)
            if run is not None:
                scores[(workers, threads)] = run.rps
        best = max(scores, key=lambda point: scores[point], default=defaults)
        # The grid ran each point once; the defaults and the best point get more, alternately.
        if best != defaults:
            for round_no in range(2, 2 + bench.profile.sweep_confirm_rounds):
                for workers, threads in (defaults, best):
                    _sweep_point(bench, server, workers, threads, round_no)
        _sweep_point(bench, server, *defaults, round_no=0, restore=True)


def _sweep_point(
    bench: Bench, server: str, workers: int, threads: int, round_no: int, restore: bool = False
) -> Run | None:
    """Restart the server with this many workers and threads, then measure it (unless restoring the defaults)."""
    label = f"{server} {workers}x{threads}"
    with bench.step("sweep", label, round_no or None, "restore" if restore else "run"):
        env = {"APP_WORKERS": str(workers), "APP_THREADS": str(threads)}
        bench.focus(VIA_NGINX[server])
        bench.restart(server, env)
        ready = bench.probe(
            "ready",
            VIA_NGINX[server] + "/readyz",
            "--instance",
            bench.containers.hostname(server),
            "--timeout",
            "90",
            timeout=120,
        )
        if not ready["ready"]:
            raise RuntimeError(f"{server} with {workers} x {threads} never answered through nginx: {ready['last']}")
        if restore:
            return None
        bench.warmed.discard(("sweep", VIA_NGINX[server]))
        return bench.wrk("sweep", label, VIA_NGINX[server], round_no, mix=SWEEP_MIX)
    return None


def generator_check(bench: Bench) -> None:
    print("7. Load generator cross-check: Locust against wrk, the same target", flush=True)
    url = VIA_NGINX["gunicorn"]
    wrk_run = bench.wrk("generator", "wrk (1 thread)", url + "/plaintext", 1)
    with bench.step("generator", "locust"):
        _locust(bench, url, wrk_run)


def _locust(bench: Bench, url: str, wrk_run: Run | None) -> None:
    bench.focus(url)
    seconds = bench.profile.locust_s
    before_cpu, before_machine = bench.containers.cpu_ns(), machine_busy_jiffies()
    started = time.monotonic()
    # Failed requests are counted in the figures, not an exit code that would lose the whole run;
    # any other non-zero exit makes exec_full raise with Locust's log. Every user starts at once,
    # so the measured span has no ramp-up in it.
    done = bench.containers.exec_full(
        "loadgen",
        "sh",
        "-c",
        "cd /tmp && locust -f /srv/bench/locust_plaintext.py --headless --only-summary --json "
        f"--exit-code-on-error 0 -u {bench.profile.connections} -r {bench.profile.connections * 100} "
        f"-t {seconds}s --host {url}",
        timeout=seconds + 60,
    )
    wall = time.monotonic() - started
    after_cpu, after_machine = bench.containers.cpu_ns(), machine_busy_jiffies()
    stats = json.loads(done.stdout)
    requests = sum(entry["num_requests"] for entry in stats)
    if not requests:
        raise RuntimeError(f"Locust sent no request in {seconds} s; its log:\n{done.stderr[-1500:]}")
    # Locust's own clock: from its stats' start to its last request, start-up and shutdown left out.
    span = max(e["last_request_timestamp"] or 0 for e in stats) - min(e["start_time"] for e in stats)
    bench.extra["locust"] = {
        "users": bench.profile.connections,
        "seconds": span,
        "requests": requests,
        "failures": sum(entry["num_failures"] for entry in stats),
        "rps": requests / span,
        # The container's CPU over the whole exec, Python's start-up included: an upper bound.
        "generator_cores": (after_cpu.get("loadgen", math.nan) - before_cpu.get("loadgen", math.nan)) / 1e9 / wall,
        "machine_busy_cores": (after_machine[0] - before_machine[0]) / os.sysconf("SC_CLK_TCK") / wall,
        # NaN when wrk's run in this section failed (its reason is in the missing list).
        "wrk_rps": wrk_run.rps if wrk_run else math.nan,
        "wrk_generator_cores": wrk_run.generator_cores if wrk_run else math.nan,
    }
    locust = bench.extra["locust"]
    print(f"  locust     {locust['rps']:8.0f} req/s, generator {locust['generator_cores']:.2f} cores", flush=True)
