"""The config files themselves: they parse, pass their tools' own checks, and agree with each other."""

from __future__ import annotations

import configparser
import os
import re
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from harness import APP_DIR, ROOT, SERVERS, local_stack, read_dotenv

DOTENV = read_dotenv()
NGINX_TEMPLATE = (ROOT / "nginx" / "nginx.conf.template").read_text()


def render_nginx(server: str) -> str:
    env = local_stack(server).env
    done = subprocess.run([str(ROOT / "nginx" / "render.sh")], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def uwsgi_ini(name: str = "uwsgi.ini") -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.read(ROOT / "uwsgi" / name)
    return dict(parser["uwsgi"])


@pytest.fixture
def gunicorn_conf(monkeypatch, tmp_path) -> dict[str, object]:
    # The addresses the image sets (APP_BIND, APP_SOCKET_DIR), here in a directory of the test's.
    image = {"APP_BIND": "127.0.0.1:8000", "APP_SOCKET_DIR": str(tmp_path / "sockets")}
    for key, value in {**DOTENV, **image, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(ROOT / "gunicorn" / "gunicorn.conf.py"))


def test_as_shipped_each_replica_listens_on_sockets_named_after_its_host(gunicorn_conf, tmp_path):
    assert DOTENV["APP_TRANSPORT"] == "unix"
    # A socket per gunicorn worker (tests/test_worker_split.py shows each worker on its own).
    replica = f"{tmp_path}/sockets/{socket.gethostname()}"
    assert gunicorn_conf["bind"] == [f"unix:{replica}.w{slot}.sock" for slot in range(int(DOTENV["APP_WORKERS"]))]
    # uWSGI's workers share one, the path its entrypoint passes on from stack.server_env.
    assert uwsgi_ini()["socket"] == "$(APP_LISTEN)"


@pytest.mark.parametrize(
    ("setting", "argv", "workers"),
    [
        ("auto", [], len(os.sched_getaffinity(0))),
        ("", [], len(os.sched_getaffinity(0))),  # set but empty (compose passes an unset one so): auto
        # nginx's own `auto` counts the host's cores; pinned to one (docs/operations.md), it gets one worker.
        ("auto", ["taskset", "--cpu-list", "0"], 1),
        ("3", ["taskset", "--cpu-list", "0"], 3),
    ],
)
def test_nginx_runs_a_worker_per_core_it_may_use_unless_told(setting, argv, workers):
    assert DOTENV["NGINX_WORKER_PROCESSES"] == "auto"
    env = {**local_stack("gunicorn").env, "NGINX_WORKER_PROCESSES": setting}
    done = subprocess.run([*argv, str(ROOT / "nginx" / "render.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"\nworker_processes {workers};\n" in Path(done.stdout.strip()).read_text()


@pytest.mark.parametrize("server", SERVERS)
def test_nginx_accepts_the_rendered_config(server):
    conf = render_nginx(server)
    done = subprocess.run(["nginx", "-t", "-e", "stderr", "-c", conf], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    text = Path(conf).read_text()
    assert f"pass-{server}.conf" in text
    assert "${" not in text, "an unrendered variable is left in the config"


def test_django_deploy_check_is_clean_with_production_settings():
    env = local_stack("gunicorn").env
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_one_timeout_budget_and_the_app_server_fires_first(gunicorn_conf):
    budget = int(DOTENV["REQUEST_TIMEOUT"])
    assert gunicorn_conf["timeout"] == budget
    assert uwsgi_ini()["harakiri"] == "$(REQUEST_TIMEOUT)"
    rendered = Path(render_nginx("gunicorn")).read_text()
    read_timeouts = re.findall(r"(?:proxy|uwsgi)_read_timeout (\d+)s;", rendered)
    assert len(read_timeouts) == 2
    assert all(int(seconds) > budget for seconds in read_timeouts)


def test_gunicorn_keepalive_outlives_nginx_upstream_keepalive(gunicorn_conf):
    nginx_idle = int(
        re.search(r"upstream app_server \{.*?keepalive_timeout (\d+)s;", NGINX_TEMPLATE, re.DOTALL).group(1)
    )
    assert gunicorn_conf["keepalive"] > nginx_idle
    # The comment beside the setting names the file and the value it depends on, correctly.
    comment = (ROOT / "gunicorn" / "gunicorn.conf.py").read_text()
    cited = re.search(r"keepalive_timeout \((\d+) s, in the\s+# upstream block of (\S+)\)", comment)
    assert cited, "gunicorn.conf.py no longer says where nginx's upstream keepalive_timeout lives"
    assert int(cited.group(1)) == nginx_idle
    assert (ROOT / cited.group(2)).read_text() == NGINX_TEMPLATE


def test_gunicorn_worker_class_streams_and_keeps_alive(gunicorn_conf):
    from gunicorn.workers.gthread import ThreadWorker

    assert issubclass(gunicorn_conf["worker_class"], ThreadWorker)
    assert gunicorn_conf["worker_tmp_dir"] == "/dev/shm"
    assert gunicorn_conf["control_socket_disable"] is True


def test_both_servers_take_workers_and_threads_from_the_same_variables(gunicorn_conf):
    ini = uwsgi_ini()
    assert ini["processes"] == "$(APP_WORKERS)"
    assert "threads" not in ini  # the worker model's file says how a worker serves requests at once
    assert uwsgi_ini("model-threads.ini")["threads"] == "$(APP_THREADS)"
    assert DOTENV["APP_WORKER_MODEL"] == "threads"
    assert gunicorn_conf["workers"] == int(DOTENV["APP_WORKERS"])
    assert gunicorn_conf["threads"] == int(DOTENV["APP_THREADS"])
    assert ini["max-requests"] == "$(MAX_REQUESTS)"
    assert gunicorn_conf["max_requests"] == int(DOTENV["MAX_REQUESTS"])


def test_under_gevent_both_servers_take_greenlets_from_the_same_variable(monkeypatch, tmp_path):
    gevent = {"APP_WORKER_MODEL": "gevent", "APP_TRANSPORT": "tcp", "APP_BIND": "127.0.0.1:8000"}
    gevent["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    for key, value in {**DOTENV, **gevent}.items():
        monkeypatch.setenv(key, value)
    conf = runpy.run_path(str(ROOT / "gunicorn" / "gunicorn.conf.py"))
    from gunicorn.workers.ggevent import GeventWorker

    assert issubclass(conf["worker_class"], GeventWorker)
    assert conf["worker_connections"] == int(DOTENV["APP_GREENLETS"])
    gevent_ini = uwsgi_ini("model-gevent.ini")
    assert gevent_ini["gevent"] == "$(APP_GREENLETS)"
    assert gevent_ini["gevent-early-monkey-patch"] == "true"
    # The entrypoint loads the model's file after uwsgi.ini; no other file sets threads or gevent.
    assert '--ini "../uwsgi/model-$APP_WORKER_MODEL.ini"' in (ROOT / "uwsgi" / "entrypoint.sh").read_text()


def test_listen_backlogs_agree_and_exceed_the_uwsgi_default(gunicorn_conf):
    assert int(uwsgi_ini()["listen"]) == gunicorn_conf["backlog"] > 100


def test_uwsgi_buffer_fits_every_header_nginx_accepts():
    count, size_k = re.search(r"large_client_header_buffers (\d+) (\d+)k;", NGINX_TEMPLATE).groups()
    assert int(uwsgi_ini()["buffer-size"]) >= int(count) * int(size_k) * 1024


def test_uwsgi_production_switches_are_on():
    ini = uwsgi_ini()
    for option in ("strict", "master", "need-app", "single-interpreter", "vacuum"):
        assert ini[option] == "true", option
    # The watchdog thread needs the GIL under either model.
    for model in ("threads", "gevent"):
        assert uwsgi_ini(f"model-{model}.ini")["enable-threads"] == "true", model
    # uWSGI 2.0's SIGTERM is a brutal reload; this hook turns it into a graceful stop.
    assert ini["hook-master-start"] == "unix_signal:15 gracefully_kill_them_all"
    assert "die-on-term" not in ini


@pytest.mark.parametrize("name", ["uwsgi.ini", "model-threads.ini", "model-gevent.ini"])
def test_every_uwsgi_option_has_a_comment_above_it(name):
    # Related options may share one comment: an option's group (the option lines right above it)
    # must start under a comment line.
    lines = (ROOT / "uwsgi" / name).read_text().splitlines()
    is_option = ["=" in line and not line.startswith(";") for line in lines]
    for number, line in enumerate(lines):
        if is_option[number]:
            above = number - 1
            while above >= 0 and is_option[above]:
                above -= 1
            assert above >= 0 and lines[above].startswith(";"), line


def test_every_dotenv_variable_has_a_comment_and_a_readme_row():
    lines = (ROOT / ".env").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    for number, line in enumerate(lines):
        if re.match(r"[A-Z_]+=", line):
            assert lines[number - 1].startswith("#"), line
            assert f"`{line.split('=')[0]}`" in readme, f"{line} is not in the README's table"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_app_servers_share_one_environment():
    services = compose()["services"]
    assert services["gunicorn"]["environment"] == services["uwsgi"]["environment"]
    assert services["gunicorn"]["volumes"] == services["uwsgi"]["volumes"]


def test_only_nginx_publishes_a_port():
    services = compose()["services"]
    optional = {"loadtest", "monitoring"}
    stack = {name: service for name, service in services.items() if not optional & set(service.get("profiles", []))}
    assert [name for name, service in stack.items() if "ports" in service] == ["nginx"]
    assert services["nginx"]["ports"] == ["${HTTP_PORT}:8080", "${HTTPS_PORT}:8443/tcp", "${HTTPS_PORT}:8443/udp"]
    # The optional Locust UI and Prometheus listen on loopback only; the exporters publish nothing.
    assert services["locust-master"]["ports"] == ["127.0.0.1:${LOCUST_UI_PORT}:8089"]
    assert services["prometheus"]["ports"] == ["127.0.0.1:${PROMETHEUS_PORT:-9090}:9090"]
    assert "ports" not in services["nginx-exporter"]
    assert "ports" not in services["cgroup-exporter"]


def test_the_cgroup_exporter_reads_the_host_read_only_and_only_this_project():
    exporter = compose()["services"]["cgroup-exporter"]
    assert exporter["volumes"] == [
        "/sys/fs/cgroup:/host/cgroup:ro",
        "${DOCKER_ROOT_DIR:-/var/lib/docker}/containers:/host/containers:ro",
    ]
    assert exporter["environment"]["COMPOSE_PROJECT"] == "${COMPOSE_PROJECT_NAME}"
    assert exporter["cap_drop"] == ["ALL"] and exporter["read_only"] is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "COMPOSE_PROJECT is not set"),
        (
            {"COMPOSE_PROJECT": "x", "DOCKER_CONTAINERS_DIR": "/nonexistent", "CGROUP_ROOT": "/sys/fs/cgroup"},
            "/nonexistent is not a directory",
        ),
    ],
)
def test_the_cgroup_exporter_names_what_is_missing(env, message):
    done = subprocess.run(
        [sys.executable, ROOT / "cgroup-exporter" / "cgroup_exporter.py"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert message in done.stderr


def test_stop_grace_outlasts_the_graceful_timeout():
    for name, service in compose()["services"].items():
        if name.startswith("locust") or name.endswith("-exporter"):  # they hold no request and no data
            continue
        grace = int(service["stop_grace_period"].removesuffix("s"))
        assert grace > int(DOTENV["GRACEFUL_TIMEOUT"]), name


def test_nginx_can_open_a_connection_per_uwsgi_request_without_running_out_of_ports():
    # Why: the comment beside these sysctls in docker-compose.yml, which has the measured figures.
    sysctls = compose()["services"]["nginx"]["sysctls"]
    assert sysctls["net.ipv4.tcp_tw_reuse"] == 1
    low, high = (int(port) for port in sysctls["net.ipv4.ip_local_port_range"].split())
    assert high - low > 60000


def test_nginx_sends_each_request_to_the_least_busy_app_worker():
    upstream = NGINX_TEMPLATE.split("upstream app_server {")[1].split("\n    }")[0]
    # nginx applies a balancing method only when it comes before keepalive.
    assert upstream.index("least_conn;") < upstream.index("keepalive 32;")
    # The counts shared by nginx's worker processes.
    assert "zone app_server 64k;" in upstream


def test_nginx_recycles_upstream_connections_so_a_restarted_worker_gets_its_share():
    assert re.search(r"keepalive_requests (\d+);", NGINX_TEMPLATE).group(1) == "100"


def test_app_servers_log_only_failed_requests_and_nginx_buffers_its_log():
    ini = uwsgi_ini()
    assert (ini["disable-logging"], ini["log-4xx"], ini["log-5xx"]) == ("true", "true", "true")
    assert re.search(r"access_log \$\{NGINX_ACCESS_LOG\} stack_json buffer=64k flush=1s;", NGINX_TEMPLATE)


def test_nginx_waits_for_a_healthy_app_server():
    depends = compose()["services"]["nginx"]["depends_on"]
    for server in SERVERS:
        assert depends[server]["condition"] == "service_healthy"


@pytest.mark.parametrize("folder", ["nginx", *SERVERS, "loadtest"])
def test_every_image_has_a_healthcheck_and_a_non_root_user(folder):
    dockerfile = (ROOT / folder / "Dockerfile").read_text()
    if folder != "loadtest":  # Locust is a client; nothing waits on its health
        assert "\nHEALTHCHECK " in dockerfile
    user = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    assert dockerfile.count("FROM debian:trixie-slim") == 2


@pytest.mark.parametrize("server", SERVERS)
def test_gixy_finds_nothing_in_the_rendered_config(server):
    # low_keepalive_requests guards clients' keep-alive; ours is the upstream pool's, where closing a
    # connection after 100 requests costs no client anything and rebalances gunicorn's workers.
    gixy = [str(Path(sys.executable).parent / "gixy"), "--skips", "low_keepalive_requests"]
    done = subprocess.run([*gixy, render_nginx(server)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No issues found." in done.stdout, done.stdout


def test_the_watchdog_knows_nginx_s_read_timeout_margin():
    from stack.watchdog import NGINX_READ_MARGIN_S

    render = (ROOT / "nginx" / "render.sh").read_text()
    assert f"NGINX_READ_TIMEOUT=$((REQUEST_TIMEOUT + {NGINX_READ_MARGIN_S}))" in render
