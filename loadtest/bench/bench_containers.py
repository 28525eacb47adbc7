"""The Docker side of `make bench`: its compose project, its containers (run, pause, exec), and the
CPU each container, each app worker and the whole machine used (cgroup counters, /proc).

bench.py measures with these; tests/test_bench_incomplete.py stands in for Containers.
"""

import os
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cgroup_exporter import cgroup_dirs
from cgroup_exporter import cpu_ns as cgroup_cpu_ns

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
COMPOSE = ["docker", "compose", "--project-directory", str(REPO), "-f", str(HERE / "compose.yml")]
# Every process's /proc/PID/stat, one line each, under the directory given as $1 (/proc in a container).
# Processes come and go while the files are read (a container's health check starts one every few
# seconds): cat skips a file that vanished between the glob and its read and goes on to the next, then
# exits 1. That status alone is what churn looks like, so it counts as success; any other (cat missing,
# killed) is still an error. The reading sh is among the lines; parse_proc_stat leaves it out.
PROC_STAT_SCRIPT = 'cat "$1"/[0-9]*/stat 2>/dev/null || [ $? -eq 1 ]'


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
        """Run only these services; pause the rest, so idle containers' health checks stay out of the figures.

        Freezing a container can fail while it starts a process (runc's "unable to freeze", seen while a
        health check started under load), after Docker has paused the others in the same command. So a
        failure re-reads which containers are paused and tries the rest again, three times in all.
        """
        errors: list[str] = []
        for attempt in range(3):
            if attempt:
                time.sleep(0.2 * attempt)
                self.paused = self.read_paused()
            unpause = sorted(self.paused & services)
            pause = sorted(set(self.ids) - services - self.paused)
            outcomes = [self._docker(command, group) for command, group in (("unpause", unpause), ("pause", pause))]
            errors = [error for error in outcomes if error]
            if not errors:
                return
        raise RuntimeError("; ".join(errors))

    def _docker(self, command: str, services: list[str]) -> str:
        """docker pause or unpause; what went wrong, or "" when every container is now in that state."""
        if not services:
            return ""
        done = subprocess.run(["docker", command, *(self.ids[s] for s in services)], text=True, capture_output=True)
        if done.returncode != 0:
            return f"docker {command} {' '.join(services)} exited {done.returncode}: {done.stderr.strip()}"
        self.paused = self.paused | set(services) if command == "pause" else self.paused - set(services)
        return ""

    def read_paused(self) -> set[str]:
        """The services whose container Docker says is paused."""
        states = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Paused}}", *self.ids.values()],
            check=True,
            text=True,
            capture_output=True,
        ).stdout.split()
        return {service for service, state in zip(self.ids, states, strict=True) if state == "true"}

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
        # Each container's CPU cgroup directory on this host, found as the stack's cgroup exporter
        # finds it (cgroup-exporter/cgroup_exporter.py).
        self.counters = {service: cpu_dir(cid) for service, cid in self.ids.items()}
        # A recreated container starts unpaused; one left paused by an earlier run stays so.
        self.paused = self.read_paused()

    @contextmanager
    def pinned(self, cpus: dict[str, str]) -> Iterator[None]:
        """These services on these cores (`docker update --cpuset-cpus`, paused or not), every core again after."""
        every = f"0-{(os.cpu_count() or 1) - 1}"
        try:
            failed = [error for service, cores in cpus.items() if (error := self._cpuset(service, cores))]
            if failed:
                raise RuntimeError("; ".join(failed))
            yield
        finally:
            # Every one put back before a failure is told: the sections after this one measure them.
            failed = [error for service in cpus if (error := self._cpuset(service, every))]
            if failed:
                raise RuntimeError("still pinned: " + "; ".join(failed))

    def _cpuset(self, service: str, cores: str) -> str:
        """docker update --cpuset-cpus; what went wrong, or "" once the container is on these cores."""
        done = subprocess.run(
            ["docker", "update", "--cpuset-cpus", cores, self.ids[service]], text=True, capture_output=True
        )
        return f"docker update --cpuset-cpus {cores} {service}: {done.stderr.strip()}" if done.returncode else ""

    def hostname(self, service: str) -> str:
        # Docker's default hostname, which the app reports as X-App-Instance.
        return self.ids[service][:12]

    def cpu_ns(self) -> dict[str, int]:
        return {s: cgroup_cpu_ns(path) for s, path in self.counters.items() if path is not None}

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


def cpu_dir(container_id: str) -> Path | None:
    dirs = cgroup_dirs(Path("/sys/fs/cgroup"), container_id)
    return dirs[0] if dirs else None


def parse_proc_stat(text: str) -> dict[str, int]:
    """CPU clock ticks (user + system) per app worker from /proc/PID/stat lines.

    Workers are the leaves of the process tree: that leaves out gunicorn's master (pid 1), uWSGI's
    supervise.py (pid 1) and master (its child, the workers' parent), and what `docker exec` starts
    (the reading sh and its cat, a health check), whose parent is outside the container (ppid 0),
    and the metrics exporter the server starts (app/stack/exporter.py names itself stack-exporter).
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
        if pid != "1" and ppid != "0" and pid not in parents and comm not in ("sh", "cat", "stack-exporter")
    }


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks over all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


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
