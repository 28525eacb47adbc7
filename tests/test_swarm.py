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
    assert file["services"]["nginx"]["environment"]["APP_SERVER_ADDR"] == f"{server}:8000"
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
