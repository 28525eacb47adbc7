"""The stack on a real multi-node swarm: the swarm lab (three Docker engines in containers, a
manager and two workers, pulling from the lab's registry), `make push` and `make swarm-deploy`.
docs/swarm.md."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from compose_stack import LOCAL_CA
from harness import HOST, ROOT, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.swarm]

REPLICAS = 4
# Seconds of load before a drill's action starts.
LOAD_BEFORE_S = 10


class Lab:
    def __init__(self) -> None:
        self.ports = {name: str(free_port()) for name in ("SWARM_API_PORT", "SWARM_HTTP_PORT", "SWARM_HTTPS_PORT")}
        self.ports["REGISTRY_PORT"] = str(free_port())

    def env(self, **extra: str) -> dict[str, str]:
        # A lab of its own, apart from one a person may be running (swarm-node/lab.yml names it).
        project = {"COMPOSE_PROJECT_NAME": "wsgi-swarm-lab-test"}
        return {**os.environ, **self.ports, **project, "SWARM_REPLICAS": str(REPLICAS), **extra}

    def manager(self, **extra: str) -> dict[str, str]:
        """The environment of a docker CLI aimed at the lab's manager."""
        return self.env(DOCKER_HOST=f"tcp://127.0.0.1:{self.ports['SWARM_API_PORT']}", **extra)

    def make(self, *args: str, env: dict[str, str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )

    def docker(self, *args: str) -> str:
        done = subprocess.run(
            ["docker", *args], env=self.manager(), capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def get(self, path: str) -> requests.Response:
        return requests.get(
            f"https://127.0.0.1:{self.ports['SWARM_HTTPS_PORT']}{path}",
            headers={"Host": HOST},
            timeout=10,
            verify=LOCAL_CA,  # `make swarm-deploy` gave nginx the local CA's certificate, as `make up` does
        )

    def under_load(self, tmp_path: Path, seconds: int, action: Callable[[], None]) -> dict:
        """loadtest/run.py's steady-rate scenario (8 users, 40 req/s each) through the lab's nginx for
        `seconds`, with `action` done meanwhile, from 10 s in; the run's summary."""
        argv = [sys.executable, str(ROOT / "loadtest" / "run.py"), "swap", "--swap-command", ""]
        argv += ["--host", f"https://localhost:{self.ports['SWARM_HTTPS_PORT']}", "--users", "8"]
        argv += ["--duration", f"{seconds}s", "--results-dir", str(tmp_path)]
        load = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(LOAD_BEFORE_S)
            started = time.monotonic()
            action()
            took = time.monotonic() - started
            output, _ = load.communicate(timeout=seconds + 120)
        finally:
            load.kill()
        print(f"the action took {took:.1f} s of the load's {seconds} s")
        print(output[output.find("swap against") : output.find("  swap ")])
        # All of it happened under the load, which went on for 5 s at least after it.
        assert LOAD_BEFORE_S + took < seconds - 5, took
        (result,) = tmp_path.glob("*-swap")
        return json.loads((result / "summary.json").read_text())

    def nodes(self, *args: str) -> None:
        """docker compose on the lab's nodes themselves (swarm-node/lab.yml)."""
        argv = ["docker", "compose", "-f", str(ROOT / "swarm-node" / "lab.yml"), *args]
        done = subprocess.run(argv, cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr

    def make_ok(self, *args: str, env: dict[str, str]) -> None:
        done = self.make(*args, env=env)
        assert done.returncode == 0, f"make {args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def lab(images) -> Iterator[Lab]:
    lab = Lab()
    try:
        for target, env in (("swarm-lab", lab.env()), ("push", lab.env()), ("swarm-deploy", lab.manager())):
            lab.make_ok(target, env=env)
        yield lab
    finally:
        lab.make("swarm-lab-down", env=lab.env(), timeout=600)
        # The tags this lab's registry port gave the images, and the drill's release.
        registry = f"127.0.0.1:{lab.ports['REGISTRY_PORT']}/"
        listed = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=True
        )
        tags = [tag for tag in listed.stdout.split() if tag.startswith(registry) or tag == "wsgi-stack/gunicorn:v2"]
        if tags:
            subprocess.run(["docker", "image", "rm", *tags], capture_output=True, check=False)


def test_app_replicas_run_on_two_nodes_and_nginx_reaches_each_of_them(lab):
    nodes = app_nodes(lab)
    assert len(nodes) == REPLICAS, nodes
    # Every task the service had, failed ones with their error, should the spread not hold.
    history = lab.docker(
        "service", "ps", "wsgi-stack_gunicorn", "--no-trunc", "--format", "{{.Node}} {{.CurrentState}} {{.Error}}"
    )
    assert len(set(nodes)) >= 2, history
    assert "node1" not in nodes  # the manager keeps nginx and PostgreSQL
    # nginx spreads requests over every replica's address, across hosts: each one answers.
    seen = set()
    deadline = time.monotonic() + 30
    while len(seen) < REPLICAS and time.monotonic() < deadline:
        answer = lab.get("/db")
        assert answer.status_code == 200, answer.text
        seen.add(answer.headers["X-App-Instance"])
    assert len(seen) == REPLICAS, seen


def served_by_every_replica_without_a_failure(summary: dict) -> None:
    assert summary["failures"] == 0, summary["failure_reasons"]
    assert summary["requests"] > 1000
    assert all(phase["non_2xx"] == 0 for phase in summary["phases"].values()), summary["phases"]


def test_a_rolling_update_to_a_new_image_under_load_fails_no_request(lab, tmp_path):
    # A new release: the same app with one more label, so its image differs, pushed as v2.
    registry = f"127.0.0.1:{lab.ports['REGISTRY_PORT']}"
    built = subprocess.run(
        ["docker", "build", "--label", "stack.release=v2", "-t", "wsgi-stack/gunicorn:v2", "-"],
        input="FROM wsgi-stack/gunicorn:latest\n", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    subprocess.run(["docker", "tag", "wsgi-stack/gunicorn:v2", f"{registry}/wsgi-stack/gunicorn:v2"], check=True)
    subprocess.run(["docker", "push", f"{registry}/wsgi-stack/gunicorn:v2"], capture_output=True, check=True)

    # One replica at a time: start the new task, wait for its health check, stop an old one, 2 s;
    # then 20 s of watching for a failure. About 55 s for 4 replicas.
    summary = lab.under_load(tmp_path, 90, lambda: lab.make_ok("swarm-deploy", env=lab.manager(IMAGE_TAG="v2")))
    served_by_every_replica_without_a_failure(summary)
    images = lab.docker(
        "service", "inspect", "wsgi-stack_gunicorn", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"
    )
    assert f"{registry}/wsgi-stack/gunicorn:v2@" in images
    # The rest of the stack was not restarted by the app's release.
    assert "wsgi-stack/nginx:latest" in lab.docker(
        "service", "inspect", "wsgi-stack_nginx", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"
    )


def test_scaling_the_app_from_2_to_6_replicas_and_back_under_load_fails_no_request(lab, tmp_path):
    lab.make_ok("swarm-deploy", env=lab.manager(SWARM_REPLICAS="2"))

    def scale() -> None:
        lab.make_ok("swarm-deploy", env=lab.manager(SWARM_REPLICAS="6"))
        lab.make_ok("swarm-deploy", env=lab.manager(SWARM_REPLICAS="2"))

    summary = lab.under_load(tmp_path, 45, scale)
    served_by_every_replica_without_a_failure(summary)


def app_nodes(lab: Lab) -> list[str]:
    """The node of each running app task."""
    running = lab.docker(
        "service",
        "ps",
        "wsgi-stack_gunicorn",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    )
    return sorted(line.split()[0] for line in running.splitlines() if line.split()[1] == "Running")


def test_draining_a_worker_node_under_load_moves_its_replicas_and_fails_no_request(lab, tmp_path):
    lab.make_ok("swarm-deploy", env=lab.manager(SWARM_REPLICAS="2"))
    assert app_nodes(lab) == ["node2", "node3"]

    def drain() -> None:
        lab.docker("node", "update", "--availability", "drain", "node3")
        deadline = time.monotonic() + 90
        while app_nodes(lab) != ["node2", "node2"]:
            assert time.monotonic() < deadline, app_nodes(lab)
            time.sleep(1)

    try:
        summary = lab.under_load(tmp_path, 40, drain)
    finally:
        lab.docker("node", "update", "--availability", "active", "node3")
    served_by_every_replica_without_a_failure(summary)


def test_locust_distributed_runs_a_worker_on_each_worker_node_and_measures_across_nodes(lab):
    def loadtest() -> dict:
        env = lab.manager(SCENARIO="throughput", USERS="16", DURATION="20s", LOCUST_WORKERS="2")
        done = lab.make("swarm-loadtest", env=env, timeout=600)
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    lab.make_ok("swarm-deploy", env=lab.manager())
    across = loadtest()
    assert across["worker_nodes"] == ["node2", "node3"], across
    assert across["failures"] == 0 and across["requests"] > 1000, across
    # The same run with every app replica on one worker node, then back (swarm-deploy's spread).
    lab.docker("service", "update", "--quiet", "--constraint-add", "node.hostname==node2", "wsgi-stack_gunicorn")
    try:
        assert app_nodes(lab) == ["node2"] * REPLICAS
        one = loadtest()
    finally:
        lab.make_ok("swarm-deploy", env=lab.manager())
        # Dropping the constraint moves no task that still fits (docs/swarm.md): restart them, spread.
        lab.docker("service", "update", "--quiet", "--force", "wsgi-stack_gunicorn")
    assert one["failures"] == 0, one
    print(f"req/s with {REPLICAS} replicas across 2 nodes: {across['rps']:,.0f}; on one node: {one['rps']:,.0f}; "
          f"ratio {across['rps'] / one['rps']:.2f}")  # fmt: skip


def nginx_task(lab: Lab) -> str:
    return lab.docker("service", "ps", "wsgi-stack_nginx", "--filter", "desired-state=running", "--quiet").strip()


def test_switching_app_server_there_and_back_under_load_fails_no_request_nor_restarts_nginx(lab, tmp_path):
    lab.make_ok("swarm-deploy", env=lab.manager(SWARM_REPLICAS="2"))
    before = nginx_task(lab)

    def there_and_back() -> None:
        for server in ("uwsgi", "gunicorn"):
            lab.make_ok("swarm-deploy", env=lab.manager(SWARM_REPLICAS="2", APP_SERVER=server))
            assert lab.get("/readyz").headers["X-App-Server"] == server
            services = lab.docker("service", "ls", "--format", "{{.Name}}").split()
            assert f"wsgi-stack_{server}" in services and len(services) == 3, services

    summary = lab.under_load(tmp_path, 60, there_and_back)
    served_by_every_replica_without_a_failure(summary)
    # The same nginx task served throughout: it was repointed and relabelled, never restarted.
    assert nginx_task(lab) == before


def task_addresses(lab: Lab, node: str) -> set[str]:
    """The addresses of the app's running tasks on `node`."""
    tasks = lab.docker("service", "ps", "wsgi-stack_gunicorn", "--filter", "desired-state=running",
                       "--filter", f"node={node}", "--quiet").split()  # fmt: skip
    listed = lab.docker("inspect", "--format", "{{range .NetworksAttachments}}{{.Addresses}}{{end}}", *tasks)
    return {address.split("/")[0] for address in listed.replace("[", " ").replace("]", " ").split()}


def nginx_resolves(lab: Lab) -> set[str]:
    """The app server's addresses as nginx's follower sees them (nginx/follow-upstream.sh)."""
    nginx = lab.docker("ps", "--quiet", "--filter", "label=com.docker.swarm.service.name=wsgi-stack_nginx").strip()
    return set(lab.docker("exec", nginx, "getent", "ahostsv4", "gunicorn").split()[::3])


def test_killing_a_worker_node_under_load_fails_boundedly_and_its_replicas_come_back(lab, tmp_path):
    lab.make_ok("swarm-deploy", env=lab.manager())
    assert sorted(set(app_nodes(lab))) == ["node2", "node3"], app_nodes(lab)
    doomed = task_addresses(lab, "node3")
    assert doomed and doomed <= nginx_resolves(lab), (doomed, nginx_resolves(lab))
    took = {}

    def kill() -> None:
        # SIGKILL to the node's container: its engine and every container in it are gone at once.
        lab.nodes("kill", "node3")
        killed = time.monotonic()
        took["at"] = time.time()
        deadline = killed + 90
        while "dns" not in took or "replicas" not in took:
            assert time.monotonic() < deadline, (took, lab.docker("service", "ps", "wsgi-stack_gunicorn"))
            if "dns" not in took and not doomed & nginx_resolves(lab):
                took["dns"] = time.monotonic() - killed
            if "replicas" not in took and app_nodes(lab) == ["node2"] * REPLICAS:
                took["replicas"] = time.monotonic() - killed
            time.sleep(0.5)

    try:
        summary = lab.under_load(tmp_path, 75, kill)
    finally:
        lab.nodes("start", "node3")
    failed = [start - took["at"] for start in failed_requests(tmp_path)]
    print(f"node3 killed: its replicas' addresses left nginx's upstream after {took['dns']:.1f} s; "
          f"{REPLICAS} replicas ran on node2 after {took['replicas']:.1f} s; {len(failed)} requests failed, "
          f"started {min(failed, default=0):.1f} to {max(failed, default=0):.1f} s after the kill")  # fmt: skip
    # What fails is what nginx sent to node3 before its follower saw the addresses go (it looks
    # every 2 s): each such request waits out nginx's budget (REQUEST_TIMEOUT + 5 s), then is a 504,
    # or, if node3 died between the response's headers and its body, nginx has already passed the
    # status on and can only close the connection: an incomplete response. Nothing sent once the
    # addresses were gone fails.
    in_flight = (": code=504", "Incomplete response")
    assert all(any(kind in reason for kind in in_flight) for reason in summary["failure_reasons"]), summary[
        "failure_reasons"
    ]
    assert all(-1 < start < took["dns"] + 3 for start in failed), (took, failed)


def failed_requests(tmp_path: Path) -> list[float]:
    """When each failed request of the load run started (loadtest/recording.py's raw rows)."""
    starts = []
    for rows in tmp_path.glob("*-swap/requests-*.csv"):
        with rows.open() as file:
            starts += [float(row["start"]) for row in csv.DictReader(file) if row["failed"] == "1"]
    return sorted(starts)
