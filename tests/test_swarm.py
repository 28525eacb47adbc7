"""docker-swarm.yml over docker-compose.yml, as scripts/swarm.py hands it to `docker stack deploy`
(no engine needed: `docker compose config` resolves the files). The swarm itself: test_swarm_e2e.py."""

from __future__ import annotations

import pytest
import swarm  # scripts/swarm.py

SERVERS = ("gunicorn", "uwsgi")


@pytest.fixture(scope="module", params=SERVERS)
def stack(request) -> tuple[str, dict]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("APP_SERVER", request.param)
        patch.setenv("REGISTRY", "registry.example:5000")
        patch.setenv("IMAGE_TAG", "v2")
        return request.param, swarm.stack_file()


def test_the_stack_runs_the_chosen_server_with_postgres_behind_nginx(stack):
    server, file = stack
    assert set(file["services"]) == {server, "postgres", "nginx"}
    # nginx's task reads the server from its service's label when it starts, so a switch of servers
    # can relabel the service without restarting nginx (swarm.py deploy).
    nginx = file["services"]["nginx"]
    assert nginx["deploy"]["labels"]["stack.app-server"] == server
    label = '{{index .Service.Labels "stack.app-server"}}'
    assert nginx["environment"]["APP_SERVER"] == label
    assert nginx["environment"]["APP_SERVER_ADDR"] == f"{label}:8000"
    # Replicas on other hosts: TCP on both ends, and no socket volume to share.
    assert nginx["environment"]["APP_TRANSPORT"] == file["services"][server]["environment"]["APP_TRANSPORT"] == "tcp"
    assert not any("app-sockets" in str(volume) for s in file["services"].values() for volume in s.get("volumes", []))
    # IMAGE_TAG is the app's release; nginx and PostgreSQL are not restarted by one.
    for name, service in file["services"].items():
        tag = "v2" if name == server else "latest"
        assert service["image"] == f"registry.example:5000/wsgi-stack/{name}:{tag}"


def test_no_key_that_stack_deploy_ignores_is_left_to_be_ignored(stack):
    _, file = stack
    for name, service in file["services"].items():
        assert not set(swarm.COMPOSE_ONLY) & set(service), name
        assert "restart_policy" in service["deploy"], name
        # /tmp stays a tmpfs (compose's tmpfs key, which swarm ignores, as a volume).
        assert {"type": "tmpfs", "target": "/tmp"} in service["volumes"], name


def test_app_replicas_spread_over_workers_update_start_first_and_roll_back(stack):
    server, file = stack
    app = file["services"][server]
    deploy = app["deploy"]
    assert deploy["endpoint_mode"] == "dnsrr"  # no IPVS: nginx follows every replica's address
    assert deploy["placement"] == {"constraints": ["node.role == worker"], "preferences": [{"spread": "node.id"}]}
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert app["environment"]["DATABASE"] == "postgres"
    assert "appdata" not in str(app["volumes"])  # no SQLite file per host


def test_nginx_answers_on_its_nodes_own_ports_with_tls_from_secrets(stack):
    _, file = stack
    nginx = file["services"]["nginx"]
    assert {(p["target"], p["protocol"], p["mode"]) for p in nginx["ports"]} == {
        (8080, "tcp", "host"),
        (8443, "tcp", "host"),
        (8443, "udp", "host"),
    }
    assert nginx["environment"]["TLS_KEY_FILE"] == "/run/secrets/tls_key"
    (key,) = [s for s in nginx["secrets"] if s["source"] == "tls_key"]
    assert (key["uid"], key["mode"]) == ("10002", 0o400)  # nginx's user alone reads the key
    assert set(file["secrets"]) == {"django_secret_key", "postgres_password", "tls_cert", "tls_key"}
    assert all(network["driver"] == "overlay" for network in file["networks"].values())


def test_a_switch_of_servers_runs_both_behind_nginx_still_on_the_old_one(monkeypatch):
    # The first step of `make swarm-deploy APP_SERVER=uwsgi` on a stack that serves gunicorn.
    monkeypatch.setenv("REGISTRY", "registry.example:5000")
    file = swarm.stack_file("gunicorn", ("gunicorn", "uwsgi"))
    assert set(file["services"]) == {"gunicorn", "uwsgi", "postgres", "nginx"}
    assert file["services"]["nginx"]["deploy"]["labels"]["stack.app-server"] == "gunicorn"


def test_a_wrong_app_server_is_refused_naming_the_choices(monkeypatch):
    monkeypatch.setenv("APP_SERVER", "waitress")
    with pytest.raises(swarm.SwarmError, match="APP_SERVER must be one of: gunicorn, uwsgi"):
        swarm.stack_file()


def test_the_locust_masters_figures_are_read_from_its_json_among_its_log_lines():
    # `make swarm-loadtest` reads `docker service logs` of the master: log lines and --json's output.
    logs = (
        "[2026-12-02 20:07:01,000] locust-master/INFO/locust.main: Run time limit reached\n[\n"
        '    {"name": "/json", "num_requests": 300, "num_failures": 1, "start_time": 100.0,'
        ' "last_request_timestamp": 110.0, "response_times": {"3": 300}},\n'
        '    {"name": "/db", "num_requests": 100, "num_failures": 0, "start_time": 100.5,'
        ' "last_request_timestamp": 120.0, "response_times": {"5": 100}}\n]\n'
    )
    assert swarm.locust_figures(logs) == {"requests": 400, "failures": 1, "rps": 20.0}
    with pytest.raises(swarm.SwarmError, match="no statistics in the Locust master's output"):
        swarm.locust_figures("[2026-12-02 20:07:01,000] locust-master/ERROR: no worker connected\n")


@pytest.mark.parametrize(("text", "seconds"), [("20s", 20), ("2m", 120), ("90", 90)])
def test_duration_reads_locusts_run_time(text, seconds):
    assert swarm.duration_s(text) == seconds


def test_a_bad_duration_is_refused_naming_the_forms():
    with pytest.raises(swarm.SwarmError, match="DURATION must be seconds"):
        swarm.duration_s("soon")
