"""`make bench`: measure this stack against its own parts, against each other, and against peers.

Starts loadtest/bench/compose.yml (both app servers with their nginx, framework-free ceilings,
three peer configurations and a load generator), measures in interleaved rounds, and writes
results/bench/raw.json, report.md and PNG charts (loadtest/bench/report.py). Every run records
the CPU each container used, read from its cgroup, so the report can say whether the load
generator was the bottleneck. The containers are removed at the end, their volume too.

A measurement that fails (a wrk run, a probe, a CPU reading, a whole section) does not end the run:
it is recorded with its reason (raw.json's "missing"), the report marks its cell "n/a: <reason>",
and the exit code is 3 with a last line listing what is missing; a complete run exits 0.

This module is the measuring (Bench: wrk runs, probes, CPU readings, failed steps) and the order of
the sections; what each section measures is in bench_sections.py (1-7), bench_https.py (8) and
bench_databases.py (9), bench_models.py (10), the targets and profiles in bench_targets.py, the Docker side in
bench_containers.py.

    python loadtest/bench/bench.py [--profile full|tiny] [--results-dir DIR]
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "cgroup-exporter"))

# Siblings in HERE, scripts/ and cgroup-exporter/, all on sys.path now.
import bench_databases  # noqa: E402
import bench_https  # noqa: E402
import bench_models  # noqa: E402
import bench_nginx_cost  # noqa: E402
import bench_sections  # noqa: E402
import local_tls  # noqa: E402
import report  # noqa: E402
from bench_containers import (  # noqa: E402
    PROC_STAT_SCRIPT,
    Containers,
    bench_stack,
    compose,
    machine_busy_jiffies,
    machine_facts,
    parse_proc_stat,
)
from bench_targets import BACKENDS, FULL, HOST, PEER_BACKENDS, PROFILES, Profile  # noqa: E402
from dotenv_file import setting  # noqa: E402

# Kept here for tests/ and the Makefile's check, though they live in bench_targets.py and bench_containers.py.
__all__ = ["FULL", "INCOMPLETE", "PROC_STAT_SCRIPT", "PROFILES", "Bench", "main", "parse_proc_stat"]

# The exit code of a run that wrote its report but could not measure everything (0: complete).
INCOMPLETE = 3
# Where `make tls` (scripts/local_tls.py) keeps the local CA's certificate: TLS_DIR's default.
LOCAL_TLS_DIR = ".secrets/tls"
# Each container's CPU counter (ns) and the machine's busy clock ticks: one reading, for Bench.cpu_used.
CpuReading = tuple[dict[str, int], int]


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
        headers: tuple[str, ...] = (),
        script: str = "",
    ) -> Run | None:
        """One wrk run, recorded in self.runs; None (and the reason in self.missing) if it could not be measured.

        script: a Lua script in loadtest/bench/ that makes the requests (and prints wrk_json.lua's summary).
        """
        with self.step(section, label, round_no):
            return self._measure(section, label, url, round_no, host, mix, threads, pace_rps, headers, script)
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
        headers: tuple[str, ...],
        script: str,
    ) -> Run:
        self.focus(url)
        wrk_args = (host, mix, threads, pace_rps, headers, script)
        if (section, url) not in self.warmed and self.profile.warmup_s:
            self._wrk_json(url, self.profile.warmup_s, *wrk_args)
            self.warmed.add((section, url))
        app = self.app_service(url)
        # The CPU readings around the run: any of them failing leaves its figures NaN, not the run lost.
        app_before: dict[str, int] = {}
        app_after: dict[str, int] = {}
        if app in self.containers.ids:
            with self.step(section, label, round_no, "worker CPU"):
                app_before = self.worker_ticks(app)
        before = self.cpu_reading(section, label, round_no)
        summary = self._wrk_json(url, self.profile.duration_s, *wrk_args)
        used = self.cpu_used(before, section, label, round_no)
        if app_before:
            with self.step(section, label, round_no, "worker CPU"):
                app_after = self.worker_ticks(app)
        # How evenly the app server's workers shared the work: the busiest one's share of their CPU.
        worker_cpu = [app_after[pid] - app_before[pid] for pid in app_after if pid in app_before]
        busiest = max(worker_cpu) / sum(worker_cpu) if len(worker_cpu) > 1 and sum(worker_cpu) else math.nan
        seconds = summary["duration_us"] / 1e6
        cpu: dict[str, float] = {}
        machine_busy = math.nan
        if used is not None:
            cpu = {service: cpu_s / seconds for service, cpu_s in used[0].items()}
            machine_busy = used[1] / seconds
        errors = summary["errors"]
        latency = summary["latency_us"]
        run = Run(
            section=section,
            label=label,
            url=url + (f" (mix: {' '.join(mix)})" if mix else "") + (f" ({script})" if script else ""),
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
        self,
        url: str,
        seconds: int,
        host: str,
        mix: list[str] | None,
        threads: int,
        pace_rps: int | None,
        headers: tuple[str, ...],
        script: str,
    ) -> dict:
        script = f"/srv/bench/{script or 'wrk_json.lua'}"
        script_args: list[str] = []
        if mix:
            script, script_args = "/srv/bench/wrk_mix.lua", mix
        elif pace_rps:
            # Each connection waits so that all of them together send about pace_rps.
            wait_ms = max(1, round(self.profile.connections * 1000 / pace_rps))
            script, script_args = "/srv/bench/wrk_paced.lua", [str(wait_ms)]
        argv = ["wrk", f"-t{threads}", f"-c{self.profile.connections}", f"-d{seconds}s", "--timeout", "10s"]
        for header in (f"Host: {host}", *headers):
            argv += ["-H", header]
        argv += ["-s", script, url]
        if script_args:
            argv += ["--", *script_args]
        out = self.containers.exec("loadgen", *argv, timeout=seconds + 60)
        line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary for {url}:\n{out}")
        return json.loads(line.removeprefix("WRK_JSON "))

    def probe(self, *args: str, timeout: float) -> dict:
        self.focus(*(arg for arg in args if arg.startswith(("http://", "https://"))))
        return json.loads(self.containers.exec("loadgen", "python", "/srv/bench/probe.py", *args, timeout=timeout))

    def cpu_reading(self, section: str, label: str, round_no: int | None) -> CpuReading | None:
        """Every container's CPU counter and the machine's busy ticks, before a measurement; None if unreadable."""
        with self.step(section, label, round_no, "CPU"):
            return self.containers.cpu_ns(), machine_busy_jiffies()[0]
        return None

    def cpu_used(
        self, before: CpuReading | None, section: str, label: str, round_no: int | None
    ) -> tuple[dict[str, float], float] | None:
        """CPU seconds each container and the whole machine used since `before`; None if either reading failed."""
        if before is None:
            return None
        with self.step(section, label, round_no, "CPU"):
            after_cpu, after_busy = self.containers.cpu_ns(), machine_busy_jiffies()[0]
            cpu = {s: (after_cpu[s] - before[0][s]) / 1e9 for s in after_cpu if s in before[0]}
            return cpu, (after_busy - before[1]) / os.sysconf("SC_CLK_TCK")
        return None

    def rounds(self) -> Iterator[tuple[int, bool]]:
        """Round numbers, and whether to take the targets in reverse, so drift hits each side alike."""
        for round_no in range(1, self.profile.rounds + 1):
            yield round_no, round_no % 2 == 0

    def restart(self, service: str, env: dict[str, str]) -> None:
        """Recreate one service with these settings (the sweep's workers and threads); its id changes."""
        compose("up", "--detach", "--no-deps", service, env=env)
        self.containers.refresh()

    @staticmethod
    def setting(name: str) -> str:
        """A shared setting, for the sections (which do not import this module): dotenv()."""
        return dotenv(name)

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
        # The last published run, whose headline figures the report puts beside this run's.
        published = REPO / "docs" / "bench" / "raw.json"
        previous = json.loads(published.read_text()) if published.exists() else None
        return report.write_report(data, self.results_dir, previous)

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
            # Section 8: the OpenSSL nginx runs with (the last of built/running), and the TLS clients.
            "nginx TLS": first_line("nginx-gunicorn", "sh", "-c", "nginx -V 2>&1 | grep -o 'OpenSSL [0-9.]*'|tail -1"),
            "openssl": first_line("loadgen", "openssl", "version"),
            "h2load": first_line("loadgen", "h2load", "--version"),
        }


def dotenv(name: str) -> str:
    """A shared setting: the environment's value if set, else .env's (scripts/dotenv_file.py reads it)."""
    value = setting(name, REPO / ".env")
    if value is None:
        raise KeyError(f"{name} is not in .env")
    return value


def ensure_certificate() -> None:
    """nginx's certificate, which docker-compose.yml mounts from TLS_DIR, must exist before `up`.

    `make bench` makes it first (`make tls`); this does the same for a run started directly: the local
    CA's certificate is made or renewed by scripts/local_tls.py, and one's own TLS_DIR is only checked.
    """
    tls_dir = dotenv("TLS_DIR")
    if Path(tls_dir) == Path(LOCAL_TLS_DIR):
        if local_tls.main(["--secrets", str(REPO / ".secrets")]) != 0:
            sys.exit("bench.py: scripts/local_tls.py could not make the local certificate")
        return
    for name in ("TLS_CERT_FILE", "TLS_KEY_FILE"):
        path = REPO / tls_dir / dotenv(name)
        if not path.is_file():
            sys.exit(f"bench.py: {path} ({name} in TLS_DIR) is missing; nginx cannot start without it")


# In this order: the sweep restarts the app servers, so it goes last.
SECTIONS: dict[str, Callable[[Bench], None]] = {
    "proxy-tax": bench_sections.proxy_tax,
    "servers": bench_sections.servers,
    "peers": bench_sections.peers,
    "ceilings": bench_sections.ceilings,
    "ttfb": bench_sections.ttfb,
    "generator": bench_sections.generator_check,
    "https": bench_https.https,
    "databases": bench_databases.databases,
    "models": bench_models.models,
    "metrics": bench_sections.metrics_cost,
    "nginx-cost": bench_nginx_cost.nginx_cost,
    "sweep": bench_sections.sweep,
}


def main(argv: list[str] | None = None) -> int:
    """Run every section and write the report; 0 when everything was measured, INCOMPLETE otherwise."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--results-dir", type=Path, default=REPO / "results" / "bench")
    parser.add_argument("--no-build", action="store_true", help="use the images as they are")
    parser.add_argument(
        "--only", action="append", choices=list(SECTIONS), help="run this section alone (repeat for more)"
    )
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if not (REPO / ".secrets" / "django_secret_key").is_file():
        sys.exit("bench.py: .secrets/django_secret_key is missing; `make bench` (or `make up`) generates it")
    ensure_certificate()
    started = time.monotonic()
    with bench_stack(build=not args.no_build):
        bench = Bench(profile, args.results_dir)
        if not all(bench.containers.counters.values()):
            print("warning: no cgroup CPU counters readable here; CPU columns will be empty", file=sys.stderr)
        for name, section in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            section_started = time.monotonic()
            with bench.step(name, what="section"):
                section(bench)
            print(f"  ({name}: {time.monotonic() - section_started:.0f} s)", flush=True)
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
