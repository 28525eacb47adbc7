"""The real docker compose stack, both servers: what a user gets from `make up`.

Each stack has its own project name and port and is torn down (volumes too) even when a
test fails. Without a Docker engine these tests fail and say why; they never skip.
"""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
import requests
from compose_stack import ComposeStack, compose_stack
from harness import MODELS, SERVERS, burst, free_port, read_dotenv

pytestmark = pytest.mark.e2e

ENDPOINTS = ["/", "/plaintext", "/json", "/db", "/queries?n=5", "/stream?chunks=2&interval_ms=10",
             "/events?count=2&interval_ms=10", "/slow?ms=10", "/healthz", "/readyz"]  # fmt: skip


@pytest.fixture
def stack(request: pytest.FixtureRequest, images: None) -> Iterator[ComposeStack]:
    running = compose_stack(request.param)
    try:
        yield running
    finally:
        running.down("--volumes")


def wait_for(check, timeout: float) -> float:
    """Seconds until check() is true; fails the test when the bounded wait runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.2)
    pytest.fail(f"not true within {timeout}s")


@pytest.mark.parametrize("stack", SERVERS, indirect=True)
def test_every_endpoint_answers_through_the_published_port(stack):
    stack.up()
    for path in ENDPOINTS:
        response = stack.get(path)
        assert response.status_code == 200, path
        assert response.headers["X-App-Server"] == stack.server, path
    css = re.search(r'href="(/static/[^"]+)"', stack.get("/").text).group(1)
    static = stack.get(css)
    assert static.status_code == 200
    assert "X-App-Server" not in static.headers


@pytest.mark.parametrize("stack", ["gunicorn"], indirect=True)
def test_plain_compose_up_switches_the_running_stack_to_uwsgi(stack):
    stack.up()
    assert stack.get("/json").headers["X-App-Server"] == "gunicorn"
    # What a user types; nobody edits nginx's config.
    stack.up(server="uwsgi")
    assert stack.get("/json").headers["X-App-Server"] == "uwsgi"
    assert stack.get("/readyz").status_code == 200


@pytest.mark.parametrize("stack", SERVERS, indirect=True)
def test_scaled_app_servers_all_get_requests(stack):
    stack.up()
    done = stack.make("scale", "REPLICAS=3")  # the user's way: refused only past PostgreSQL's limit
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(stack.container_ids(stack.server)) == 3

    def all_three_answer() -> bool:
        seen = {stack.get("/plaintext").headers["X-App-Instance"] for _ in range(30)}
        return len(seen) == 3

    # nginx picks up the new addresses when follow-upstream.sh reloads it (every 2 s).
    wait_for(all_three_answer, timeout=15)


@pytest.mark.parametrize("stack", SERVERS, indirect=True)
def test_recreated_app_container_is_routed_to_within_10s(stack):
    stack.up()
    nginx = stack.container_ids("nginx")[0]
    nginx_started = stack.inspect(nginx)["State"]["StartedAt"]
    old = stack.inspect(stack.container_ids(stack.server)[0])
    # A stand-in joins the network first: if Docker hands out the freed address again, the
    # stand-in gets it, so the new container's address differs either way.
    network = next(iter(old["NetworkSettings"]["Networks"]))
    old_ip = old["NetworkSettings"]["Networks"][network]["IPAddress"]
    stack.compose("rm", "--stop", "--force", stack.server)
    squatter = subprocess.run(
        ["docker", "run", "--detach", "--rm", "--network", network,
         "--entrypoint", "sleep", f"wsgi-stack/{stack.server}:latest", "120"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        stack.up("--no-deps", stack.server)
        new = stack.inspect(stack.container_ids(stack.server)[0])
        assert new["NetworkSettings"]["Networks"][network]["IPAddress"] != old_ip
        hostname = new["Config"]["Hostname"]
        waited = wait_for(lambda: stack.get("/readyz").headers.get("X-App-Instance") == hostname, 10)
        print(f"{stack.server}: routed to the recreated container {waited:.1f}s after it was healthy")
    finally:
        subprocess.run(["docker", "rm", "--force", squatter], capture_output=True, check=False)
    assert stack.inspect(nginx)["State"]["StartedAt"] == nginx_started, "nginx was restarted"


@pytest.mark.parametrize("stack", ["uwsgi"], indirect=True)
def test_sqlite_volume_survives_down_and_up(stack):
    stack.up()
    first = stack.compose("logs", stack.server).stdout
    assert "prepare_db: 0 rows existed, 10000 added" in first
    stack.down()
    assert stack.leftovers()["volumes"], "down without --volumes must keep the database"
    stack.up()
    second = stack.compose("logs", stack.server).stdout
    assert "prepare_db: 10000 rows existed, 0 added" in second
    assert stack.get("/readyz").status_code == 200


@pytest.mark.parametrize("stack", ["gunicorn"], indirect=True)
def test_down_leaves_nothing_behind(stack):
    stack.up()
    assert stack.leftovers()["containers"]
    stack.down("--volumes")
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}


@pytest.mark.parametrize("stack", SERVERS, indirect=True)
def test_containers_are_hardened(stack):
    stack.up()
    for service in ("nginx", stack.server):
        container = stack.container_ids(service)[0]
        info = stack.inspect(container)
        assert info["Config"]["User"] not in ("", "root", "0"), service
        assert info["HostConfig"]["ReadonlyRootfs"] is True, service
        assert info["HostConfig"]["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in info["HostConfig"]["SecurityOpt"], service
        assert list(info["HostConfig"]["Tmpfs"]) == ["/tmp"], service
        uid = stack.compose("exec", "-T", service, "id", "-u").stdout.strip()
        assert uid != "0", service
        probe = stack.compose("exec", "-T", service, "touch", "/probe", check=False)
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr, service


@pytest.mark.parametrize("image", ["nginx", *SERVERS])
def test_images_carry_no_compiler(images, image):
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "/bin/sh", f"wsgi-stack/{image}:latest", "-c",
         "for tool in gcc cc c++ g++ clang tcc make; do command -v $tool; done; true"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == ""


def test_make_loadtest_and_compare_work_against_the_running_stack(images, tmp_path):
    stack = compose_stack("gunicorn")
    try:
        up = stack.make("up")
        assert up.returncode == 0, up.stdout + up.stderr
        loadtest = stack.make(
            "loadtest", "SCENARIO=throughput", "USERS=4", "DURATION=4s", f"RESULTS_DIR={tmp_path / 'one'}"
        )
        assert loadtest.returncode == 0, loadtest.stdout + loadtest.stderr
        assert list((tmp_path / "one").glob("*-gunicorn-throughput/summary.json"))
        compare = stack.make(
            "compare", "SCENARIO=throughput", "ROUNDS=1", "USERS=4", "DURATION=4s", f"RESULTS_DIR={tmp_path}"
        )
        assert compare.returncode == 0, compare.stdout + compare.stderr
        (report_dir,) = tmp_path.glob("compare-*-throughput")
        report = (report_dir / "report.md").read_text()
        assert "| gunicorn |" in report and "| uwsgi |" in report
        assert "**No verdict**" in report  # one round cannot tell noise from difference
        # Without MONITORING=1 the report says where the server side would come from.
        assert "## Server side\n\nserver side: no Prometheus at http://127.0.0.1:" in report
        assert (report_dir / "chart.png").read_bytes().startswith(b"\x89PNG")
    finally:
        stack.down("--volumes")


def test_loadtest_ui_runs_locust_master_and_workers(images):
    stack = compose_stack("gunicorn")
    ui_port = free_port()
    try:
        done = stack.make("loadtest-ui", LOCUST_UI_PORT=str(ui_port), LOCUST_WORKERS="2")
        assert done.returncode == 0, done.stdout + done.stderr
        ui = f"http://127.0.0.1:{ui_port}"
        # Locust has no healthcheck: `up --wait` returns once it runs, before the UI listens.
        wait_for(lambda: requests.get(ui + "/", timeout=5).status_code == 200, 30)
        wait_for(lambda: requests.get(ui + "/stats/requests", timeout=5).json()["worker_count"] == 2, 30)
        started = requests.post(ui + "/swarm", data={"user_count": 2, "spawn_rate": 2}, timeout=10)
        assert started.status_code == 200

        def answered() -> bool:
            stats = requests.get(ui + "/stats/requests", timeout=5).json()
            return stats["total_rps"] > 0 and stats["fail_ratio"] == 0

        wait_for(answered, 20)
        requests.get(ui + "/stop", timeout=10)
    finally:
        stack.down("--volumes")


@pytest.mark.parametrize("model", MODELS)
def test_make_swap_under_load_there_and_back_loses_nothing(images, tmp_path, model):
    stack = compose_stack("gunicorn")
    try:
        assert stack.make("up", APP_WORKER_MODEL=model).returncode == 0
        # run.py swaps at 30% and 65% of the run with `make swap`, as a user's run would; the swap
        # starts the other server under the same model. Each swap takes about 9 s: in a 30 s run the
        # steady state was 7 s, and its p99, the swap's yardstick, rested on its top 20 requests.
        done = stack.make(
            "loadtest", "SCENARIO=swap", "USERS=8", "DURATION=45s", f"RESULTS_DIR={tmp_path}", APP_WORKER_MODEL=model
        )
        print(done.stdout[done.stdout.find("swap against") :])
        (result,) = tmp_path.glob("*-swap")
        summary = json.loads((result / "summary.json").read_text())
        assert [swap["to"] for swap in summary["swaps"]] == ["uwsgi", "gunicorn"]
        assert all("done" in swap for swap in summary["swaps"])
        phases = summary["phases"]
        assert summary["failures"] == 0, summary["failure_reasons"]
        assert phases["steady"]["non_2xx"] == phases["swap"]["non_2xx"] == 0
        assert set(phases["swap"]["servers"]) == {"gunicorn", "uwsgi"}
        assert phases["swap"]["p99_ms"] <= 3 * phases["steady"]["p99_ms"]
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        assert stack.container_ids("uwsgi") == []  # the old server was stopped and removed
    finally:
        stack.down("--volumes")


def test_make_swap_edge_cases(images):
    stack = compose_stack("gunicorn")
    # One request outlives the target's start (about 10 s) and a short reload wait.
    stack.overrides["SLOW_MAX_MS"] = "25000"
    try:
        assert stack.make("up").returncode == 0
        same = stack.make("swap", "TO=gunicorn")
        assert same.returncode == 0
        assert "gunicorn is already active; nothing to do" in same.stdout

        # The target cannot start: the swap aborts and the old server goes on serving.
        broken = stack.make("swap", "TO=uwsgi", "SWAP_TIMEOUT=60", APP_WORKERS="abc")
        assert broken.returncode != 0
        assert "uwsgi did not become healthy" in broken.stderr
        assert "gunicorn goes on serving" in broken.stderr
        assert "APP_WORKERS must be an integer" in broken.stderr
        assert stack.get("/json").headers["X-App-Server"] == "gunicorn"
        assert stack.container_ids("uwsgi") == []

        # A second swap while one holds the lock is refused.
        with open(f"/tmp/wsgi-stack-swap-{stack.project}.lock", "w") as lock:  # noqa: PTH123
            fcntl.flock(lock, fcntl.LOCK_EX)
            refused = stack.make("swap", "TO=uwsgi")
        assert refused.returncode != 0
        assert "another swap of" in refused.stderr
        assert stack.get("/json").headers["X-App-Server"] == "gunicorn"

        # nginx's old workers outlive the wait: the swap stops short of draining gunicorn, says
        # so, and the same command finishes it once they are done.
        held = burst(lambda: stack.get("/slow?ms=25000", 40).status_code, 1)
        stack.wait_until_handed_over(1)
        impatient = stack.make("swap", "TO=uwsgi", NGINX_OLD_WORKERS_WAIT="1")
        assert impatient.returncode != 0
        assert "gunicorn was left running and was not drained" in impatient.stderr
        assert "`make swap TO=uwsgi` again stops it" in impatient.stderr
        assert stack.get("/json").headers["X-App-Server"] == "uwsgi"
        assert stack.container_ids("gunicorn"), "gunicorn was stopped while nginx could still reach it"
        assert held[0].result() == 200
        finished = stack.make("swap", "TO=uwsgi")
        assert finished.returncode == 0, finished.stderr
        assert "still runs (a swap did not finish); finishing it" in finished.stdout
        assert stack.container_ids("gunicorn") == []

        # Three times as many slow requests as uWSGI has threads, then a swap away from it.
        slow = slow_burst(stack, 3 * slots(stack))
        swapped = stack.make("swap", "TO=gunicorn")
        assert swapped.returncode == 0, swapped.stderr
        assert "done: gunicorn is active" in swapped.stdout
        statuses = [future.result() for future in slow]
        assert statuses == [200] * len(statuses)
        assert stack.get("/json").headers["X-App-Server"] == "gunicorn"
    finally:
        stack.down("--volumes")


def slots(stack: ComposeStack) -> int:
    """Requests the app server runs at once with the shipped settings (workers x threads)."""
    shipped = read_dotenv()
    return int(shipped["APP_WORKERS"]) * int(shipped["APP_THREADS"])


def slow_burst(stack: ComposeStack, count: int) -> list[Future[int]]:
    """More slow requests than the server has threads: the rest wait (uWSGI: in its listen queue)."""
    futures = burst(lambda: stack.get("/slow?ms=2000", 60).status_code, count)
    stack.wait_until_handed_over(count)  # all of them are in the app server's hands before the stop
    return futures


@pytest.mark.parametrize("stack", SERVERS, indirect=True)
def test_compose_stop_answers_every_request_handed_to_the_server(stack):
    stack.up()
    slow = slow_burst(stack, 3 * slots(stack))
    stopped = time.monotonic()
    stack.compose("stop", stack.server)  # SIGTERM, then up to stop_grace_period
    took = time.monotonic() - stopped
    statuses = [future.result() for future in slow]
    print(f"{stack.server}: stopped in {took:.1f} s; {statuses.count(200)} of {len(statuses)} answered 200")
    assert statuses == [200] * len(statuses)
    assert took < 30  # drained, not killed at the grace period
    # No app server: nginx answers, clearly and quickly, instead of hanging or resetting.
    started = time.monotonic()
    gone = stack.get("/json")
    assert gone.status_code == 503
    assert gone.json() == {"error": "no app server is available right now; try again shortly"}
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("stack", SERVERS, indirect=True)
def test_scale_down_then_make_down_answer_every_request_handed_to_the_server(stack):
    stack.up("--scale", f"{stack.server}=2")
    wait_for(lambda: len({stack.get("/plaintext").headers["X-App-Instance"] for _ in range(10)}) == 2, 15)
    # Both replicas full and queued, and a client that keeps asking while one replica goes away.
    slow = slow_burst(stack, 2 * 3 * slots(stack))
    steady: list[int] = []
    done = threading.Event()

    def keep_asking() -> None:
        while not done.is_set():
            steady.append(stack.get("/plaintext").status_code)
            time.sleep(0.02)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        stack.up("--scale", f"{stack.server}=1")
        statuses = [future.result() for future in slow]
    finally:
        done.set()
        asker.join(timeout=20)
    print(f"{stack.server}: scale 2 -> 1: {statuses.count(200)} of {len(statuses)} slow and "
          f"{steady.count(200)} of {len(steady)} steady requests answered 200")  # fmt: skip
    assert statuses == [200] * len(statuses)
    assert steady and set(steady) == {200}
    assert len(stack.container_ids(stack.server)) == 1
    # `make down` stops nginx first (it depends on the server): nginx waits for its requests.
    slow = slow_burst(stack, 3 * slots(stack))
    down = stack.make("down")
    assert down.returncode == 0, down.stdout + down.stderr
    statuses = [future.result() for future in slow]
    print(f"{stack.server}: make down: {statuses.count(200)} of {len(statuses)} answered 200")
    assert statuses == [200] * len(statuses)


@pytest.mark.parametrize(
    ("service", "name", "value", "message"),
    [
        ("gunicorn", "APP_WORKERS", "abc", "APP_WORKERS must be an integer, got 'abc'"),
        ("uwsgi", "APP_THREADS", "0", "APP_THREADS must be between 1 and 256, got 0"),
        ("nginx", "REQUEST_TIMEOUT", "30s", "REQUEST_TIMEOUT must be a whole number, got '30s'"),
    ],
)
def test_a_container_with_an_invalid_setting_exits_naming_it(images, service, name, value, message):
    stack = compose_stack("uwsgi" if service == "uwsgi" else "gunicorn")
    stack.overrides[name] = value
    try:
        done = stack.compose("run", "--rm", "--no-deps", service, check=False, timeout=120)
    finally:
        stack.down("--volumes")
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
