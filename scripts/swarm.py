"""The stack on Docker swarm: `make push`, `make swarm-deploy`, `make swarm-rm`, and the swarm lab.

    swarm.py push            tag the stack's images for $REGISTRY and push them there
    swarm.py deploy          deploy (or update) the stack on the swarm the docker CLI points at
    swarm.py loadtest        Locust in distributed mode, its workers on the swarm's workers
    swarm.py rm              remove the stack (volumes stay, as `docker stack rm` leaves them)
    swarm.py lab-up          three Docker engines in containers joined as a swarm (swarm-node/lab.yml)
    swarm.py lab-down        remove the lab, its volumes too

deploy merges docker-compose.yml with docker-swarm.yml through `docker compose config` (profiles,
.env and overrides resolved as compose resolves them) and drops what `docker stack deploy` does not
read: compose's own keys, which docker-swarm.yml replaces with `deploy:`. The docker CLI's target
(DOCKER_HOST or its context) must be a swarm manager; the lab's is tcp://127.0.0.1:$SWARM_API_PORT.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = "wsgi-stack"
# `make swarm-loadtest`: Locust beside the stack, not part of it.
LOAD_STACK = f"{STACK}-load"
SERVERS = ("gunicorn", "uwsgi")
IMAGES = (*SERVERS, "nginx", "postgres", "loadtest")
LAB = ["docker", "compose", "-f", str(ROOT / "swarm-node" / "lab.yml")]
LAB_NODES = ("node1", "node2", "node3")
# Compose keys `docker stack deploy` rejects or ignores; docker-swarm.yml says what replaces each.
COMPOSE_ONLY = ("build", "profiles", "depends_on", "restart", "tmpfs", "security_opt", "pull_policy")


class SwarmError(RuntimeError):
    pass


def run(argv: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise SwarmError(f"{' '.join(argv[:4])}... exited {done.returncode}:\n{done.stderr.strip()[-2000:]}")
    return done.stdout


def setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


def registry() -> str:
    """Where images go and come from: the lab's registry on loopback unless REGISTRY says otherwise."""
    return setting("REGISTRY", f"127.0.0.1:{setting('REGISTRY_PORT', '5000')}")


def push() -> None:
    """The app servers' images as IMAGE_TAG (the release), nginx's and PostgreSQL's as latest."""
    tag = setting("IMAGE_TAG", "latest")
    for image in IMAGES:
        target = f"{registry()}/wsgi-stack/{image}:{tag if image in SERVERS else 'latest'}"
        run(["docker", "tag", f"wsgi-stack/{image}:latest", target])
        print(f"push: {target}", flush=True)
        run(["docker", "push", target], timeout=1200)


def stack_file(server: str = "", servers: tuple[str, ...] = (), more: tuple[str, ...] = ()) -> dict:
    """docker-compose.yml with docker-swarm.yml over it, as `docker stack deploy` reads it: nginx in
    front of `server` (APP_SERVER by default), with the app services `servers` (that one alone by
    default), and the services of the compose profiles `more`."""
    server = server or app_server()
    profiles = ",".join((*(servers or (server,)), "postgres", *more))
    env = {**os.environ, "COMPOSE_PROFILES": profiles, "APP_SERVER": server, "REGISTRY": registry()}
    argv = ["docker", "compose", "-f", "docker-compose.yml", "-f", "docker-swarm.yml", "config", "--format", "json"]
    merged = json.loads(run(argv, env=env))
    return for_stack_deploy(merged)


def for_stack_deploy(merged: dict) -> dict:
    """Compose's resolved project as a version 3 stack file: compose-only keys and empty values
    dropped, and the few values whose type version 3 states otherwise converted."""
    stack: dict = {"version": "3.9"}
    for section in ("services", "networks", "volumes", "secrets"):
        stack[section] = {}
        for name, body in (merged.get(section) or {}).items():
            body = {key: value for key, value in (body or {}).items() if value is not None}
            if section == "services":
                for key in COMPOSE_ONLY:
                    body.pop(key, None)
                for port in body.get("ports", []):
                    port["published"] = int(port["published"])
                for secret in body.get("secrets", []):
                    if "mode" in secret:
                        secret["mode"] = int(secret["mode"], 8)
                limits = body.get("deploy", {}).get("resources", {}).get("limits", {})
                if "cpus" in limits:
                    limits["cpus"] = str(limits["cpus"])
            else:
                body.pop("name", None)  # compose's names carry its project; the stack prefixes its own
            stack[section][name] = body
    return stack


def app_server() -> str:
    server = setting("APP_SERVER", "gunicorn")
    if server not in SERVERS:
        raise SwarmError(f"APP_SERVER must be one of: {', '.join(SERVERS)} (got {server!r})")
    return server


def deploy() -> None:
    """Deploy or update the stack. On a stack that runs the other server, switch servers the way
    `make swap` does under compose: start APP_SERVER's service next to the old one, repoint the
    running nginx (reload), then remove the old service and relabel nginx's, which does not restart it."""
    target = app_server()
    current = serving_server()
    if current in SERVERS and current != target:
        print(f"deploy: nginx serves {current}; starting {target} next to it", flush=True)
        stack_deploy(stack_file(current, (current, target)))
        print(f"deploy: {target} runs its replicas; pointing nginx at it and reloading gracefully", flush=True)
        repoint_nginx(target)
    stack_deploy(stack_file())
    if current in SERVERS and current != target:
        print(f"deploy: done: nginx serves {target}, and {current}'s service is gone", flush=True)


def stack_deploy(stack: dict) -> None:
    print(deploy_file(stack, STACK, "--prune"), flush=True)
    wait_converged(float(setting("SWARM_TIMEOUT", "300")))


def deploy_file(stack: dict, name: str, *flags: str) -> str:
    """`docker stack deploy` of a stack given as a dict (written to a temporary file beside the
    compose files, whose relative paths it may hold); returns what the command printed."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=ROOT, prefix=".swarm-stack-") as file:
        json.dump(stack, file, indent=1)
        file.flush()
        return run(["docker", "stack", "deploy", *flags, "-c", file.name, name], timeout=300)


def serving_server() -> str | None:
    """The server nginx's service is labelled with (docker-swarm.yml); None with no stack."""
    done = subprocess.run(
        ["docker", "service", "inspect", f"{STACK}_nginx", "--format", '{{index .Spec.Labels "stack.app-server"}}'],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else None


def repoint_nginx(target: str) -> None:
    """nginx/reload.sh in the running nginx, as `make swap` runs it: it returns once no old worker
    can still send to the old server. The CLI's engine is the manager, where nginx runs."""
    container = run(["docker", "ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={STACK}_nginx"])
    if len(container.split()) != 1:
        raise SwarmError(f"expected nginx's one container on this node (the manager), found: {container.split()}")
    env = [f"APP_SERVER={target}", f"APP_SERVER_ADDR={target}:8000"]
    argv = ["docker", "exec", *(arg for pair in env for arg in ("-e", pair)), container.strip()]
    done = subprocess.run([*argv, "/etc/nginx/stack/reload.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SwarmError(
            f"repointing nginx at {target} failed (exit {done.returncode}); both servers still run, and "
            f"`make swarm-deploy APP_SERVER={target}` again finishes the switch:\n{done.stderr.strip()[-2000:]}"
        )


def loadtest() -> None:
    """Locust's distributed mode on the swarm, headless (`make swarm-loadtest`): the master on the
    manager, LOCUST_WORKERS workers spread over the workers, sending to nginx over the stack's
    frontend network. A stack of its own beside the app's, removed when the run ends. Prints each
    worker's node and the run's figures; the last line is them as JSON."""
    timeout = float(setting("SWARM_TIMEOUT", "300")) + duration_s(setting("DURATION", "20s"))
    merged = stack_file(more=("loadtest",))
    stack = {
        "version": "3.9",
        "services": {name: body for name, body in merged["services"].items() if name.startswith("locust-")},
        "networks": {"frontend": {"external": True, "name": f"{STACK}_frontend"}},
    }
    remove_load_stack()
    try:
        deploy_file(stack, LOAD_STACK)
        master = f"{LOAD_STACK}_locust-master"
        ended = wait_ended(master, timeout)
        logs = run(["docker", "service", "logs", "--raw", master])
        nodes = run(["docker", "service", "ps", f"{LOAD_STACK}_locust-worker", "--format", "{{.Node}}"]).split()
    finally:
        remove_load_stack()
    # Locust exits 1 when a request failed: the run still has its figures, which say so.
    figures = {"worker_nodes": sorted(nodes), **locust_figures(f"{logs}\n(the master's task: {ended})")}
    print(f"swarm loadtest: Locust workers on {', '.join(figures['worker_nodes'])}: {figures['requests']:,} requests, "
          f"{figures['failures']} failed, {figures['rps']:,.0f} req/s")  # fmt: skip
    print(json.dumps(figures), flush=True)


def duration_s(text: str) -> float:
    """Locust's --run-time as seconds: 90, 90s, 2m or 1h."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise SwarmError(f"DURATION must be seconds, or a number with s, m or h (got {text!r})") from None


def wait_ended(service: str, timeout: float) -> str:
    """Until the service's one task has ended (bounded): its state and error."""
    deadline = time.monotonic() + timeout
    while True:
        state = run(["docker", "service", "ps", service, "--format", "{{.CurrentState}} {{.Error}}"]).split("\n")[0]
        if state.startswith(("Complete", "Failed", "Rejected", "Shutdown")):
            return state.strip()
        if time.monotonic() > deadline:
            raise SwarmError(f"{service} had not finished after {timeout:.0f}s: {state}")
        time.sleep(2)


def locust_figures(logs: str) -> dict:
    """The run's totals from the master's --json output (Locust's per-endpoint stats)."""
    starts = [match.start() for match in re.finditer(r"^\[\s*$", logs, re.MULTILINE)]
    if not starts:
        raise SwarmError(f"no statistics in the Locust master's output:\n{logs[-2000:]}")
    endpoints, _ = json.JSONDecoder().raw_decode(logs[starts[-1] :])
    requests = sum(entry["num_requests"] for entry in endpoints)
    failures = sum(entry["num_failures"] for entry in endpoints)
    began = min(entry["start_time"] for entry in endpoints)
    ended = max(entry["last_request_timestamp"] for entry in endpoints)
    return {"requests": requests, "failures": failures, "rps": requests / max(ended - began, 1e-9)}


def remove_load_stack() -> None:
    """docker stack rm returns before its services are gone: wait (bounded) so a new run starts clean."""
    subprocess.run(["docker", "stack", "rm", LOAD_STACK], cwd=ROOT, capture_output=True, timeout=60)
    deadline = time.monotonic() + 60
    while run(["docker", "service", "ls", "--quiet", "--filter", f"label=com.docker.stack.namespace={LOAD_STACK}"]):
        if time.monotonic() > deadline:
            raise SwarmError(f"the stack {LOAD_STACK} was not removed within 60s")
        time.sleep(1)


def wait_converged(timeout: float) -> None:
    """Until every service runs its replicas and no update is still rolling (bounded); an update
    that rolled back is an error."""
    deadline = time.monotonic() + timeout
    while True:
        names = run(["docker", "service", "ls", "--quiet", "--filter", f"label=com.docker.stack.namespace={STACK}"])
        services = json.loads(run(["docker", "service", "inspect", *names.split()])) if names.strip() else []
        pending = []
        for service in services:
            name, state = service["Spec"]["Name"], (service.get("UpdateStatus") or {}).get("State", "")
            if state.startswith("rollback") or state == "paused":
                message = (service.get("UpdateStatus") or {}).get("Message", "")
                raise SwarmError(f"{name}'s update did not complete ({state}): {message}")
            if state not in ("", "completed"):
                pending.append(f"{name}: updating")
        listed = run(["docker", "service", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}",
                      "--format", "{{.Name}} {{.Replicas}}"]).split("\n")  # fmt: skip
        pending += [line for line in listed if line and not replicas_done(line.split()[1])]
        if not pending:
            print("deploy: every service runs its replicas", flush=True)
            return
        if time.monotonic() > deadline:
            raise SwarmError(f"not every service converged within {timeout:.0f}s: {pending}")
        time.sleep(2)


def replicas_done(replicas: str) -> bool:
    """`docker service ls`'s REPLICAS column: "4/4" (or "4/4 (max 2 per node)") is done."""
    running, _, wanted = replicas.partition("/")
    return running == wanted.split()[0]


def remove() -> None:
    print(run(["docker", "stack", "rm", STACK]), flush=True)


def lab_up() -> None:
    run([*LAB, "up", "--detach", "--build", "--wait"], timeout=1800)
    engines = {node: [*LAB, "exec", "-T", node, "docker"] for node in LAB_NODES}
    for node, docker in engines.items():
        wait_for_engine(node, docker)
    manager, workers = LAB_NODES[0], LAB_NODES[1:]
    if not in_swarm(engines[manager]):
        address = run([*LAB, "exec", "-T", manager, "hostname", "-i"]).split()[0]
        run([*engines[manager], "swarm", "init", "--advertise-addr", address, "--task-history-limit", "1"])
    token = run([*engines[manager], "swarm", "join-token", "--quiet", "worker"]).strip()
    for worker in workers:
        if not in_swarm(engines[worker]):
            run([*engines[worker], "swarm", "join", "--token", token, f"{manager}:2377"])
    # The scheduler spreads tasks only over nodes that are Ready; a worker that has just joined
    # may not be yet, and a deploy then would put every replica on the other.
    deadline = time.monotonic() + 60
    while run([*engines[manager], "node", "ls", "--format", "{{.Status}}"]).split() != ["Ready"] * len(LAB_NODES):
        if time.monotonic() > deadline:
            raise SwarmError(f"not every node was Ready within 60s:\n{run([*engines[manager], 'node', 'ls'])}")
        time.sleep(1)
    print(run([*engines[manager], "node", "ls"]), flush=True)
    port = setting("SWARM_API_PORT", "2375")
    print(f"swarm lab: up. Its manager: DOCKER_HOST=tcp://127.0.0.1:{port}", flush=True)


def in_swarm(docker: list[str]) -> bool:
    """Whether this engine is an active member; one stuck in another state (its node recreated
    under it) leaves, to join again."""
    state = run([*docker, "info", "--format", "{{.Swarm.LocalNodeState}}"]).strip()
    if state not in ("active", "inactive"):
        run([*docker, "swarm", "leave", "--force"])
    return state == "active"


def wait_for_engine(node: str, docker: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run([*docker, "info"], cwd=ROOT, capture_output=True, timeout=30).returncode != 0:
        if time.monotonic() > deadline:
            logs = run([*LAB, "logs", "--tail", "30", node])
            raise SwarmError(f"{node}'s Docker engine did not answer within {timeout:.0f}s:\n{logs}")
        time.sleep(1)


def lab_down() -> None:
    run([*LAB, "down", "--volumes", "--remove-orphans"], timeout=300)


COMMANDS = {"push": push, "deploy": deploy, "loadtest": loadtest, "rm": remove, "lab-up": lab_up, "lab-down": lab_down}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=list(COMMANDS))
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command]()
    except (SwarmError, subprocess.TimeoutExpired) as error:
        print(f"swarm {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
