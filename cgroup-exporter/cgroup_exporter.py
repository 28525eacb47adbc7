"""CPU and memory of each container of one compose project, from the host's cgroups.

`python3 cgroup_exporter.py` serves them on :9201 to the `monitoring` profile's Prometheus
(docker-compose.yml mounts the host's /sys/fs/cgroup and Docker's containers directory read-only).

Why our own: cAdvisor, the usual source, is not in Debian, and nothing here can be pulled; Debian's
node exporter sees the host, not its containers. Why files and not Docker's API: the API socket
would give this container the run of the host; these two read-only mounts give it the figures.

Each scrape lists the running containers of $COMPOSE_PROJECT (their config.v2.json, as Docker
writes it) and reads each one's cgroup, under cgroup v1 or v2 and Docker's cgroupfs or systemd
driver. A container that stopped between the listing and the reading is left out of that scrape.
The names are cAdvisor's, with the compose service and the container's name as labels.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PORT = 9201
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def cgroup_dirs(root: Path, container_id: str) -> tuple[Path, Path] | None:
    """The container's CPU and memory cgroup directories: v1 or v2, cgroupfs or systemd driver."""
    for cpu, memory in (
        (root / "cpuacct" / "docker", root / "memory" / "docker"),  # v1, cgroupfs (Docker's default)
        (root / "cpu,cpuacct" / "docker", root / "memory" / "docker"),
        (root / "cpuacct" / "system.slice", root / "memory" / "system.slice"),  # v1, systemd
        (root / "docker", root / "docker"),  # v2, cgroupfs
        (root / "system.slice", root / "system.slice"),  # v2, systemd
    ):
        name = f"docker-{container_id}.scope" if cpu.name == "system.slice" else container_id
        if (cpu / name).is_dir():
            return cpu / name, memory / name
    return None


def cpu_ns(cpu_dir: Path) -> int:
    """CPU time the container's processes used, in nanoseconds."""
    if (cpu_dir / "cpu.stat").exists() and not (cpu_dir / "cpuacct.usage").exists():  # v2
        fields = dict(line.split() for line in (cpu_dir / "cpu.stat").read_text().splitlines())
        return int(fields["usage_usec"]) * 1000
    return int((cpu_dir / "cpuacct.usage").read_text())


def working_set_bytes(memory_dir: Path) -> int:
    """Memory in use less the page cache the kernel can drop at once (cAdvisor's working set):
    PostgreSQL's and Prometheus' files would otherwise count as their memory."""
    if (memory_dir / "memory.current").exists():  # v2
        usage, inactive = int((memory_dir / "memory.current").read_text()), "inactive_file"
    else:
        usage, inactive = int((memory_dir / "memory.usage_in_bytes").read_text()), "total_inactive_file"
    fields = dict(line.split() for line in (memory_dir / "memory.stat").read_text().splitlines())
    return max(usage - int(fields.get(inactive, 0)), 0)


class ContainersCollector:
    def __init__(self, project: str, containers: Path, cgroups: Path) -> None:
        self.project, self.containers, self.cgroups = project, containers, cgroups

    def running(self) -> Iterator[tuple[str, str, str]]:
        """(id, service, name) of each running container of the project."""
        for config_file in self.containers.glob("*/config.v2.json"):
            try:
                config = json.loads(config_file.read_text())
            except (OSError, ValueError):
                continue  # removed, or being written, meanwhile
            labels = config.get("Config", {}).get("Labels") or {}
            if labels.get(PROJECT_LABEL) == self.project and config.get("State", {}).get("Running"):
                yield config["ID"], labels.get(SERVICE_LABEL, ""), config.get("Name", "").lstrip("/")

    def collect(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            "container_cpu_usage_seconds", "CPU time of the container", labels=["service", "container"]
        )
        memory = GaugeMetricFamily(
            "container_memory_working_set_bytes",
            "Memory of the container, less the page cache it can give back",
            labels=["service", "container"],
        )
        for container_id, service, name in self.running():
            dirs = cgroup_dirs(self.cgroups, container_id)
            try:
                if dirs is None:
                    continue
                cpu_seconds, memory_bytes = cpu_ns(dirs[0]) / 1e9, working_set_bytes(dirs[1])
            except (OSError, KeyError, ValueError):
                continue  # stopped meanwhile: no figure rather than a wrong one
            cpu.add_metric([service, name], cpu_seconds)
            memory.add_metric([service, name], memory_bytes)
        yield cpu
        yield memory


def required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"cgroup-exporter: {name} is not set (docker-compose.yml sets it)")
    return value


def main() -> int:
    collector = ContainersCollector(
        required("COMPOSE_PROJECT"), Path(required("DOCKER_CONTAINERS_DIR")), Path(required("CGROUP_ROOT"))
    )
    for path in (collector.containers, collector.cgroups):
        if not path.is_dir():
            sys.exit(f"cgroup-exporter: {path} is not a directory; is the host's directory mounted there?")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    start_http_server(PORT, registry=registry)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
