"""`make bench`: measure this stack against its own parts, against each other, and against peers.

Starts loadtest/bench/compose.yml (both app servers with their nginx, framework-free ceilings,
three peer configurations and a load generator), measures in interleaved rounds, and writes
results/bench/raw.json, report.md and PNG charts (loadtest/bench/report.py). Every run records
the CPU each container used, read from its cgroup, so the report can say whether the load
generator was the bottleneck. The containers are removed at the end, their volume too.

A measurement that fails (a wrk run, a probe, a CPU reading, a whole section) does not end the run:
it is recorded with its reason (raw.json's "missing"), the report marks its cell "n/a: <reason>",
and the exit code is 3 with a last line listing what is missing; a complete run exits 0.

    python loadtest/bench/bench.py [--profile full|tiny] [--results-dir DIR]
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "scripts"))

import report  # noqa: E402  (a sibling module; HERE is on sys.path now)
from dotenv_file import read_dotenv  # noqa: E402  (scripts/, on sys.path now)

COMPOSE = ["docker", "compose", "--project-directory", str(REPO), "-f", str(HERE / "compose.yml")]
# The Host header our nginx and Django answer for (ALLOWED_HOSTS in .env).
HOST = "localhost"
# Any name outside ALLOWED_HOSTS reaches nginx's default server, whose /nginx-health is `return 200`.
NGINX_ONLY_HOST = "nginx-ceiling"
SERVERS = ("gunicorn", "uwsgi")
# Where each server answers plain HTTP in the bench: gunicorn's own port, uWSGI's extra http-socket.
DIRECT = {"gunicorn": "http://gunicorn:8000", "uwsgi": "http://uwsgi:8001"}
VIA_NGINX = {"gunicorn": "http://nginx-gunicorn:8080", "uwsgi": "http://nginx-uwsgi:8080"}
# The same nginx config and server containers, over a Unix socket in a shared volume (section 1 only).
VIA_NGINX_UNIX = {"gunicorn": "http://nginx-gunicorn-unix:8080", "uwsgi": "http://nginx-uwsgi-unix:8080"}
HELLO_DIRECT = {"gunicorn": "http://hello-gunicorn:8000", "uwsgi": "http://hello-uwsgi:8001"}
HELLO_VIA_NGINX = {"gunicorn": "http://nginx-hello-gunicorn:8080", "uwsgi": "http://nginx-hello-uwsgi:8080"}
# Peers behind one nginx, a port each (loadtest/bench/peers/nginx.conf).
PEERS = {
    "peer: gunicorn defaults": "http://peer-nginx:8081",
    "peer: django template": "http://peer-nginx:8082",
    "peer: uWSGI defaults": "http://peer-nginx:8083",
}
ENDPOINTS = {
    "plaintext": "/plaintext",
    "json": "/json",
    "db": "/db",
    "queries?n=20": "/queries?n=20",
    "stream": "/stream?chunks=16&interval_ms=0&size=1024",
}
SWEEP_MIX = ["/plaintext", "/json", "/db", "/queries?n=20"]
# What each front door needs behind it; everything else is paused while a target is measured.
BACKENDS = {
    "nginx-gunicorn": ("gunicorn",),
    "nginx-uwsgi": ("uwsgi",),
    "nginx-gunicorn-unix": ("gunicorn",),
    "nginx-uwsgi-unix": ("uwsgi",),
    "nginx-hello-gunicorn": ("hello-gunicorn",),
    "nginx-hello-uwsgi": ("hello-uwsgi",),
}
PEER_BACKENDS = {8081: "peer-gunicorn-defaults", 8082: "peer-gunicorn-template", 8083: "peer-uwsgi-defaults"}
# The naive peer's own proxy tax: gunicorn's defaults straight, and behind its bare proxy_pass.
NAIVE_DIRECT, NAIVE_VIA_NGINX = "http://peer-gunicorn-defaults:8000", PEERS["peer: gunicorn defaults"]
# Every process's /proc/PID/stat, one line each, under the directory given as $1 (/proc in a container).
# Processes come and go while the files are read (a container's health check starts one every few
# seconds): cat skips a file that vanished between the glob and its read and goes on to the next, then
# exits 1. That status alone is what churn looks like, so it counts as success; any other (cat missing,
# killed) is still an error. The reading sh is among the lines; parse_proc_stat leaves it out.
PROC_STAT_SCRIPT = 'cat "$1"/[0-9]*/stat 2>/dev/null || [ $? -eq 1 ]'
# The exit code of a run that wrote its report but could not measure everything (0: complete).
INCOMPLETE = 3


@dataclass(frozen=True)
class Profile:
    rounds: int
    # wrk's -d, whole seconds; warmup runs once per target and section.
    duration_s: int
    warmup_s: int
    connections: int
    ttfb_requests: int
    stream_interval_ms: int
    concurrent_streams: int
    concurrent_stream: str
    sweep_grid: tuple[tuple[int, int], ...]
    sweep_confirm_rounds: int
    # Seconds of Locust in the generator cross-check; a 1 s run once sent nothing in CI's tiny bench.
    locust_s: int
    peer_endpoints: tuple[str, ...]
    # Per endpoint, the request rate every stack is compared at for p99: below the slowest peer's peak.
    peer_paced_rps: tuple[tuple[str, int], ...]
    server_endpoints: tuple[str, ...]


FULL = Profile(
    rounds=3,
    duration_s=3,
    warmup_s=1,
    connections=32,
    ttfb_requests=100,
    stream_interval_ms=25,
    concurrent_streams=16,
    concurrent_stream="/stream?chunks=4&interval_ms=250",
    # One process alone at 1 thread, then 2 (one per core) and 4 processes at 1, 4 and 8 threads.
    sweep_grid=((1, 1), *((w, t) for w in (2, 4) for t in (1, 4, 8))),
    sweep_confirm_rounds=2,
    locust_s=6,
    peer_endpoints=("plaintext", "queries?n=20"),
    peer_paced_rps=(("plaintext", 1000), ("queries?n=20", 150)),
    server_endpoints=tuple(ENDPOINTS),
)
PROFILES = {
    # About 12 minutes on 2 cores, once the images are built.
    "full": FULL,
    # Seconds of load, every section and code path once: CI's check that the command works.
    "tiny": replace(
        FULL,
        rounds=1,
        duration_s=1,
        warmup_s=0,
        connections=8,
        ttfb_requests=5,
        concurrent_streams=3,
        concurrent_stream="/stream?chunks=2&interval_ms=100",
        sweep_grid=((2, 4), (1, 2)),
        sweep_confirm_rounds=1,
        locust_s=3,
        peer_endpoints=("plaintext",),
        peer_paced_rps=(("plaintext", 200),),
        server_endpoints=("plaintext", "stream"),
    ),
}


def compose(*args: str, env: dict[str, str] | None = None, capture: bool = False) -> str:
    result = subprocess.run(
        [*COMPOSE, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


class Containers:
    """The bench project's containers by service, and the CPU time each has used (cgroup counters)."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.counters: dict[str, Path | None] = {}
        self.paused: set[str] = set()
        self.refresh()

    def focus(self, services: set[str]) -> None:
        """Run only these services; pause the rest, so idle containers' health checks stay out of the figures."""
        pause = sorted(set(self.ids) - services - self.paused)
        unpause = sorted(self.paused & services)
        if unpause:
            subprocess.run(["docker", "unpause", *(self.ids[s] for s in unpause)], check=True, capture_output=True)
            self.paused -= set(unpause)
        if pause:
            subprocess.run(["docker", "pause", *(self.ids[s] for s in pause)], check=True, capture_output=True)
            self.paused |= set(pause)

    def refresh(self) -> None:
        out = compose("ps", "--format", "{{.Service}} {{.ID}}", capture=True)
        short = dict(line.split() for line in out.splitlines() if line.strip())
        full = subprocess.run(
            ["docker", "inspect", "--format", "{{.Id}}", *short.values()],
            check=True,
            text=True,
            capture_output=True,
        ).stdout.split()
        self.ids = dict(zip(short, full, strict=True))
        self.counters = {service: cgroup_cpu_file(cid) for service, cid in self.ids.items()}

    def hostname(self, service: str) -> str:
        # Docker's default hostname, which the app reports as X-App-Instance.
        return self.ids[service][:12]

    def cpu_ns(self) -> dict[str, int]:
        return {s: read_cpu_ns(path) for s, path in self.counters.items() if path is not None}

    def exec(self, service: str, *argv: str, timeout: float) -> str:
        return self.exec_full(service, *argv, timeout=timeout).stdout

    def exec_full(self, service: str, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", "exec", self.ids[service], *argv], check=False, text=True, capture_output=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:3])}... in {service} exited {result.returncode}: {result.stderr[-1500:]}"
            )
        return result


def cgroup_cpu_file(container_id: str) -> Path | None:
    """The host's CPU counter file for a container: cgroup v1 or v2, cgroupfs or systemd driver."""
    root = Path("/sys/fs/cgroup")
    for candidate in (
        root / "cpuacct" / "docker" / container_id / "cpuacct.usage",
        root / "cpu,cpuacct" / "docker" / container_id / "cpuacct.usage",
        root / "cpuacct" / "system.slice" / f"docker-{container_id}.scope" / "cpuacct.usage",
        root / "docker" / container_id / "cpu.stat",
        root / "system.slice" / f"docker-{container_id}.scope" / "cpu.stat",
    ):
        if candidate.exists():
            return candidate
    return None


def read_cpu_ns(path: Path) -> int:
    text = path.read_text()
    if path.name == "cpu.stat":
        fields = dict(line.split() for line in text.splitlines())
        return int(fields["usage_usec"]) * 1000
    return int(text)


def parse_proc_stat(text: str) -> dict[str, int]:
    """CPU clock ticks (user + system) per app worker from /proc/PID/stat lines.

    Workers are the leaves of the process tree: that leaves out gunicorn's master (pid 1), uWSGI's
    supervise.py (pid 1) and master (its child, the workers' parent), and what `docker exec` starts
    (the reading sh and its cat, a health check), whose parent is outside the container (ppid 0).
    """
    processes = {}
    for line in text.splitlines():
        pid, rest = line.split(" ", 1)
        # comm may hold spaces; after it come state, ppid, ..., utime and stime (the 12th and 13th).
        comm, after = rest[1:].rsplit(")", 1)
        fields = after.split()
        processes[pid] = (comm, fields[1], int(fields[11]) + int(fields[12]))
    parents = {ppid for _, ppid, _ in processes.values()}
    return {
        pid: ticks
        for pid, (comm, ppid, ticks) in processes.items()
        if pid != "1" and ppid != "0" and pid not in parents and comm not in ("sh", "cat")
    }


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks over all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Run:
    section: str
    label: str
    url: str
    round: int
    tool: str
    requests: int
    duration_s: float
    rps: float
    errors: int
    non_2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    # Cores used during the run, per container, and by the whole machine.
    cpu: dict[str, float]
    machine_busy_cores: float
    generator_cores: float
    generator_threads: int
    # The busiest app worker's share of all workers' CPU (0.5 is even with two); NaN if unknown.
    busiest_worker_share: float
    # Readings this run could not take, with the reason: "CPU" (containers' and machine's), "worker CPU".
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class Missing:
    """A measurement step that failed: a wrk run, a probe, a CPU reading, or a whole section."""

    section: str
    label: str
    round: int | None
    what: str
    reason: str

    def describe(self) -> str:
        where = " ".join(x for x in (self.section, self.label, f"r{self.round}" if self.round else "") if x)
        return f"{where} ({self.what}): {report.one_line(self.reason, 200)}"


class Bench:
    def __init__(self, profile: Profile, results_dir: Path, containers: Containers | None = None) -> None:
        self.profile = profile
        self.results_dir = results_dir
        self.containers = containers or Containers()
        self.runs: list[Run] = []
        self.extra: dict[str, object] = {}
        self.warmed: set[tuple[str, str]] = set()
        self.missing: list[Missing] = []

    @contextmanager
    def step(self, section: str, label: str = "", round_no: int | None = None, what: str = "run") -> Iterator[None]:
        """One measurement step. If it fails, the failure is recorded with its reason and the bench goes on.

        The one place a failure is caught: every wrk run, probe, CPU reading and section runs inside a
        step, so one failed measurement costs its own cell of the report (marked n/a with the reason),
        never the run. The report is written from what was measured; main() then exits INCOMPLETE.
        """
        try:
            yield
        except Exception as exc:  # whatever went wrong, the rest of the run is still worth having
            missing = Missing(section, label, round_no, what, f"{type(exc).__name__}: {exc}".strip())
            self.missing.append(missing)
            print(f"  n/a        {missing.describe()}", flush=True)

    def missing_in(self, section: str, label: str, round_no: int | None) -> dict[str, str]:
        """What failed so far within one run's steps (its CPU readings), by what: the run keeps the reasons."""
        return {
            m.what: m.reason
            for m in self.missing
            if (m.section, m.label, m.round) == (section, label, round_no) and m.what != "run"
        }

    # --- measuring -------------------------------------------------------------------
    @staticmethod
    def app_service(url: str) -> str:
        """The app server container behind a URL: the host itself, or what its nginx fronts."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == "peer-nginx":
            return PEER_BACKENDS[parts.port or 80]
        return BACKENDS.get(host, (host,))[0]

    def worker_ticks(self, service: str, proc: str = "/proc") -> dict[str, int]:
        """CPU clock ticks per worker process of an app server (its pid 1, the master, left out)."""
        out = self.containers.exec(service, "sh", "-c", PROC_STAT_SCRIPT, "sh", proc, timeout=30)
        if not out.strip():
            # The reading sh's own line is always there when the script works at all.
            raise RuntimeError(f"no {proc}/PID/stat could be read in {service}")
        return parse_proc_stat(out)

    def focus(self, *urls: str) -> None:
        services = {"loadgen"}
        for url in urls:
            parts = urlsplit(url)
            services.add(parts.hostname or "")
            services.update(BACKENDS.get(parts.hostname or "", ()))
            if parts.hostname == "peer-nginx":
                services.add(PEER_BACKENDS[parts.port or 80])
        self.containers.focus(services)

    def wrk(
        self,
        section: str,
        label: str,
        url: str,
        round_no: int,
        host: str = HOST,
        mix: list[str] | None = None,
        threads: int = 1,
        pace_rps: int | None = None,
    ) -> Run | None:
        """One wrk run, recorded in self.runs; None (and the reason in self.missing) if it could not be measured."""
        with self.step(section, label, round_no):
            return self._measure(section, label, url, round_no, host, mix, threads, pace_rps)
        return None

    def _measure(
        self,
        section: str,
        label: str,
        url: str,
        round_no: int,
        host: str,
        mix: list[str] | None,
        threads: int,
        pace_rps: int | None,
    ) -> Run:
        self.focus(url)
        if (section, url) not in self.warmed and self.profile.warmup_s:
            self._wrk_json(url, host, self.profile.warmup_s, mix, threads, pace_rps)
            self.warmed.add((section, url))
        app = self.app_service(url)
        # The CPU readings around the run: any of them failing leaves its figures NaN, not the run lost.
        app_before: dict[str, int] = {}
        app_after: dict[str, int] = {}
        before = after = None
        if app in self.containers.ids:
            with self.step(section, label, round_no, "worker CPU"):
                app_before = self.worker_ticks(app)
        with self.step(section, label, round_no, "CPU"):
            before = self.containers.cpu_ns(), machine_busy_jiffies()
        summary = self._wrk_json(url, host, self.profile.duration_s, mix, threads, pace_rps)
        if before is not None:
            with self.step(section, label, round_no, "CPU"):
                after = self.containers.cpu_ns(), machine_busy_jiffies()
        if app_before:
            with self.step(section, label, round_no, "worker CPU"):
                app_after = self.worker_ticks(app)
        # How evenly the app server's workers shared the work: the busiest one's share of their CPU.
        worker_cpu = [app_after[pid] - app_before[pid] for pid in app_after if pid in app_before]
        busiest = max(worker_cpu) / sum(worker_cpu) if len(worker_cpu) > 1 and sum(worker_cpu) else math.nan
        seconds = summary["duration_us"] / 1e6
        cpu: dict[str, float] = {}
        machine_busy = math.nan
        if before is not None and after is not None:
            (before_cpu, before_machine), (after_cpu, after_machine) = before, after
            cpu = {s: (after_cpu[s] - before_cpu[s]) / 1e9 / seconds for s in after_cpu if s in before_cpu}
            machine_busy = (after_machine[0] - before_machine[0]) / os.sysconf("SC_CLK_TCK") / seconds
        errors = summary["errors"]
        latency = summary["latency_us"]
        run = Run(
            section=section,
            label=label,
            url=url + (f" (mix: {' '.join(mix)})" if mix else ""),
            round=round_no,
            tool="wrk",
            requests=summary["requests"],
            duration_s=seconds,
            rps=summary["requests"] / seconds,
            errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
            non_2xx=errors["status"],
            p50_ms=latency["p50"] / 1000,
            p90_ms=latency["p90"] / 1000,
            p99_ms=latency["p99"] / 1000,
            max_ms=latency["max"] / 1000,
            cpu=cpu,
            machine_busy_cores=machine_busy,
            generator_cores=cpu.get("loadgen", float("nan")),
            generator_threads=threads,
            busiest_worker_share=busiest,
            missing=self.missing_in(section, label, round_no),
        )
        self.runs.append(run)
        print(
            f"  {section:<10} {label:<34} r{round_no} {run.rps:8.0f} req/s  p99 {run.p99_ms:7.1f} ms  "
            f"gen {run.generator_cores:.2f} cores  errors {run.errors + run.non_2xx}",
            flush=True,
        )
        return run

    def _wrk_json(
        self, url: str, host: str, seconds: int, mix: list[str] | None, threads: int, pace_rps: int | None
    ) -> dict:
        script = "/srv/bench/wrk_json.lua"
        script_args: list[str] = []
        if mix:
            script, script_args = "/srv/bench/wrk_mix.lua", mix
        elif pace_rps:
            # Each connection waits so that all of them together send about pace_rps.
            wait_ms = max(1, round(self.profile.connections * 1000 / pace_rps))
            script, script_args = "/srv/bench/wrk_paced.lua", [str(wait_ms)]
        argv = ["wrk", f"-t{threads}", f"-c{self.profile.connections}", f"-d{seconds}s", "--timeout", "10s"]
        argv += ["-H", f"Host: {host}", "-s", script, url]
        if script_args:
            argv += ["--", *script_args]
        out = self.containers.exec("loadgen", *argv, timeout=seconds + 60)
        line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary for {url}:\n{out}")
        return json.loads(line.removeprefix("WRK_JSON "))

    def probe(self, *args: str, timeout: float) -> dict:
        self.focus(*(arg for arg in args if arg.startswith("http://")))
        return json.loads(self.containers.exec("loadgen", "python", "/srv/bench/probe.py", *args, timeout=timeout))

    def rounds(self) -> Iterator[tuple[int, bool]]:
        """Round numbers, and whether to take the targets in reverse, so drift hits each side alike."""
        for round_no in range(1, self.profile.rounds + 1):
            yield round_no, round_no % 2 == 0

    # --- sections --------------------------------------------------------------------
    def proxy_tax(self) -> None:
        print("1. Proxy tax: /plaintext direct vs through nginx", flush=True)
        paths = {
            name: [("direct", DIRECT[name]), ("nginx", VIA_NGINX[name]), ("nginx-unix", VIA_NGINX_UNIX[name])]
            for name in SERVERS
        }
        paths["peer: gunicorn defaults"] = [("direct", NAIVE_DIRECT), ("nginx", NAIVE_VIA_NGINX)]
        for round_no, reverse in self.rounds():
            for name, targets in paths.items():
                for how, base in reversed(targets) if reverse else targets:
                    self.wrk("proxy-tax", f"{name} {how}", base + "/plaintext", round_no)

    def servers(self) -> None:
        print("2. gunicorn vs uWSGI through nginx", flush=True)
        for round_no, reverse in self.rounds():
            for endpoint in self.profile.server_endpoints:
                order = list(reversed(SERVERS)) if reverse else list(SERVERS)
                for server in order:
                    self.wrk("servers", f"{server} {endpoint}", VIA_NGINX[server] + ENDPOINTS[endpoint], round_no)

    def peers(self) -> None:
        print("3. Peers' configurations", flush=True)
        stacks = {f"ours: {s}": VIA_NGINX[s] for s in SERVERS} | PEERS
        for round_no, reverse in self.rounds():
            for endpoint in self.profile.peer_endpoints:
                items = list(stacks.items())
                for name, base in reversed(items) if reverse else items:
                    self.wrk("peers", f"{name} {endpoint}", base + ENDPOINTS[endpoint], round_no)
            for endpoint, rate in self.profile.peer_paced_rps:
                items = list(stacks.items())
                for name, base in reversed(items) if reverse else items:
                    label = f"{name} {endpoint}@{rate}"
                    self.wrk("peers-paced", label, base + ENDPOINTS[endpoint], round_no, pace_rps=rate)
        streams: dict[str, object] = {}
        self.extra["concurrent_streams"] = {
            "clients": self.profile.concurrent_streams,
            "path": self.profile.concurrent_stream,
            "results": streams,
        }
        for name, base in stacks.items():
            with self.step("streams", name, what="probe"):
                # Enough time for the slowest peer to serve every stream one after another.
                result = self.probe(
                    "concurrent",
                    base + self.profile.concurrent_stream,
                    "--clients",
                    str(self.profile.concurrent_streams),
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

    def ceilings(self) -> None:
        print("4. Ceilings: nginx alone, a WSGI hello-world on each server", flush=True)
        targets = [("nginx return 200", VIA_NGINX["gunicorn"] + "/nginx-health", NGINX_ONLY_HOST)]
        for server in SERVERS:
            targets.append((f"{server} hello direct", HELLO_DIRECT[server] + "/", HOST))
            targets.append((f"{server} hello nginx", HELLO_VIA_NGINX[server] + "/", HOST))
        for round_no, reverse in self.rounds():
            for label, url, host in reversed(targets) if reverse else targets:
                self.wrk("ceilings", label, url, round_no, host=host)

    def ttfb(self) -> None:
        print("5. Streaming: time to first byte, through nginx minus direct", flush=True)
        path = f"/stream?chunks=2&interval_ms={self.profile.stream_interval_ms}"
        pairs = {s: {"direct": DIRECT[s] + path, "nginx": VIA_NGINX[s] + path} for s in SERVERS}
        urls = [url for pair in pairs.values() for url in pair.values()]
        with self.step("ttfb", what="probe"):
            result = self.probe("ttfb", *urls, "--requests", str(self.profile.ttfb_requests), timeout=600)
            ttfb = {"path": path, "interval_ms": self.profile.stream_interval_ms, "urls": pairs, "results": result}
            self.extra["ttfb"] = ttfb
            for server, d in report.ttfb_deltas(ttfb).items():
                print(
                    f"  ttfb       {server:<10} direct p50 {d['direct']['p50']:.2f} ms, "
                    f"nginx p50 {d['nginx']['p50']:.2f} ms",
                    flush=True,
                )

    def sweep(self) -> None:
        print("6. Workers x threads sweep (mixed endpoints, through nginx)", flush=True)
        defaults = (int(dotenv("APP_WORKERS")), int(dotenv("APP_THREADS")))
        self.extra["sweep_defaults"] = list(defaults)
        for server in SERVERS:
            scores: dict[tuple[int, int], float] = {}
            for workers, threads in self.profile.sweep_grid:
                run = self._sweep_point(server, workers, threads, round_no=1)
                if run is not None:
                    scores[(workers, threads)] = run.rps
            best = max(scores, key=lambda point: scores[point], default=defaults)
            # The grid ran each point once; the defaults and the best point get more, alternately.
            if best != defaults:
                for round_no in range(2, 2 + self.profile.sweep_confirm_rounds):
                    for workers, threads in (defaults, best):
                        self._sweep_point(server, workers, threads, round_no)
            self._sweep_point(server, *defaults, round_no=0, restore=True)

    def _sweep_point(self, server: str, workers: int, threads: int, round_no: int, restore: bool = False) -> Run | None:
        """Restart the server with this many workers and threads, then measure it (unless restoring the defaults)."""
        label = f"{server} {workers}x{threads}"
        with self.step("sweep", label, round_no or None, "restore" if restore else "run"):
            env = {"APP_WORKERS": str(workers), "APP_THREADS": str(threads)}
            self.focus(VIA_NGINX[server])
            compose("up", "--detach", "--no-deps", server, env=env)
            self.containers.refresh()
            ready = self.probe(
                "ready",
                VIA_NGINX[server] + "/readyz",
                "--instance",
                self.containers.hostname(server),
                "--timeout",
                "90",
                timeout=120,
            )
            if not ready["ready"]:
                raise RuntimeError(f"{server} with {workers} x {threads} never answered through nginx: {ready['last']}")
            if restore:
                return None
            self.warmed.discard(("sweep", VIA_NGINX[server]))
            return self.wrk("sweep", label, VIA_NGINX[server], round_no, mix=SWEEP_MIX)
        return None

    def generator_check(self) -> None:
        print("7. Load generator cross-check: Locust against wrk, the same target", flush=True)
        url = VIA_NGINX["gunicorn"]
        wrk_run = self.wrk("generator", "wrk (1 thread)", url + "/plaintext", 1)
        with self.step("generator", "locust"):
            self._locust(url, wrk_run)

    def _locust(self, url: str, wrk_run: Run | None) -> None:
        self.focus(url)
        seconds = self.profile.locust_s
        before_cpu, before_machine = self.containers.cpu_ns(), machine_busy_jiffies()
        started = time.monotonic()
        # Failed requests are counted in the figures, not an exit code that would lose the whole run;
        # any other non-zero exit makes exec_full raise with Locust's log. Every user starts at once,
        # so the measured span has no ramp-up in it.
        done = self.containers.exec_full(
            "loadgen",
            "sh",
            "-c",
            "cd /tmp && locust -f /srv/bench/locust_plaintext.py --headless --only-summary --json "
            f"--exit-code-on-error 0 -u {self.profile.connections} -r {self.profile.connections * 100} "
            f"-t {seconds}s --host {url}",
            timeout=seconds + 60,
        )
        wall = time.monotonic() - started
        after_cpu, after_machine = self.containers.cpu_ns(), machine_busy_jiffies()
        stats = json.loads(done.stdout)
        requests = sum(entry["num_requests"] for entry in stats)
        if not requests:
            raise RuntimeError(f"Locust sent no request in {seconds} s; its log:\n{done.stderr[-1500:]}")
        # Locust's own clock: from its stats' start to its last request, start-up and shutdown left out.
        span = max(e["last_request_timestamp"] or 0 for e in stats) - min(e["start_time"] for e in stats)
        self.extra["locust"] = {
            "users": self.profile.connections,
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
        locust = self.extra["locust"]
        print(f"  locust     {locust['rps']:8.0f} req/s, generator {locust['generator_cores']:.2f} cores", flush=True)

    # --- output ----------------------------------------------------------------------
    def write(self, profile_name: str, started: float) -> Path:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "profile": profile_name,
            "settings": asdict(self.profile),
            "machine": machine_facts(),
            "versions": self.versions(),
            "elapsed_s": time.monotonic() - started,
            "runs": [asdict(run) for run in self.runs],
            **self.extra,
            # Every step that failed, with its reason: the report marks these cells n/a.
            "missing": [asdict(m) for m in self.missing],
        }
        (self.results_dir / "raw.json").write_text(json.dumps(data, indent=1))
        return report.write_report(data, self.results_dir)

    def versions(self) -> dict[str, str]:
        self.containers.focus(set(self.containers.ids))

        def first_line(service: str, *argv: str) -> str:
            try:
                out = subprocess.run(
                    ["docker", "exec", self.containers.ids[service], *argv], text=True, capture_output=True, timeout=30
                )
                return (out.stdout + out.stderr).strip().splitlines()[0]
            except (OSError, IndexError, subprocess.SubprocessError, KeyError):
                return "unknown"

        return {
            "nginx": first_line("nginx-gunicorn", "nginx", "-v"),
            "gunicorn": first_line("gunicorn", "gunicorn", "--version"),
            "uwsgi": first_line("uwsgi", "uwsgi", "--version"),
            "django": first_line("gunicorn", "python", "-c", "import django; print(django.get_version())"),
            "python": first_line("gunicorn", "python", "--version"),
            "wrk": first_line("loadgen", "sh", "-c", "wrk -v 2>&1 | head -1"),
        }


def dotenv(name: str) -> str:
    """A shared setting: the environment's value if set, else .env's (scripts/dotenv_file.py reads it)."""
    value = os.environ.get(name) or read_dotenv(REPO / ".env").get(name)
    if value is None:
        raise KeyError(f"{name} is not in .env")
    return value


def machine_facts() -> dict[str, object]:
    cpu_model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        mem_kib = int(meminfo.read_text().split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


@contextmanager
def bench_stack(build: bool) -> Iterator[None]:
    """The bench containers, up and healthy for the body, removed (with their volume) after."""
    up = ["up", "--detach", "--wait", "--wait-timeout", "300", "--remove-orphans"]
    try:
        compose(*up, *(["--build"] if build else []))
        yield
    finally:
        # Paused containers would not stop; unpause fails harmlessly when none is paused.
        subprocess.run([*COMPOSE, "unpause"], cwd=REPO, check=False, capture_output=True)
        compose("down", "--volumes", "--remove-orphans", "--timeout", "10")


def main(argv: list[str] | None = None) -> int:
    """Run every section and write the report; 0 when everything was measured, INCOMPLETE otherwise."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--results-dir", type=Path, default=REPO / "results" / "bench")
    parser.add_argument("--no-build", action="store_true", help="use the images as they are")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if not (REPO / ".secrets" / "django_secret_key").is_file():
        sys.exit("bench.py: .secrets/django_secret_key is missing; `make bench` (or `make up`) generates it")
    started = time.monotonic()
    with bench_stack(build=not args.no_build):
        bench = Bench(profile, args.results_dir)
        if not all(bench.containers.counters.values()):
            print("warning: no cgroup CPU counters readable here; CPU columns will be empty", file=sys.stderr)
        sections = {
            "proxy-tax": bench.proxy_tax,
            "servers": bench.servers,
            "peers": bench.peers,
            "ceilings": bench.ceilings,
            "ttfb": bench.ttfb,
            "generator": bench.generator_check,
            "sweep": bench.sweep,
        }
        for name, section in sections.items():
            with bench.step(name, what="section"):
                section()
        path = bench.write(args.profile, started)
    print(f"\nReport: {path}  ({time.monotonic() - started:.0f} s)")
    if bench.missing:
        print(
            f"Incomplete run: {len(bench.missing)} measurement(s) missing (n/a in the report): "
            + "; ".join(m.describe() for m in bench.missing),
            flush=True,
        )
        return INCOMPLETE
    return 0


if __name__ == "__main__":
    sys.exit(main())
