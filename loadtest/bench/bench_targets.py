"""What `make bench` measures: the targets (each service's URL on the bench's compose networks) and
the profiles (how long, how many rounds, how many connections). bench.py and its sections read these.
"""

from dataclasses import dataclass, replace

# The Host header our nginx and Django answer for (ALLOWED_HOSTS in .env).
HOST = "localhost"
# Any name outside ALLOWED_HOSTS reaches nginx's default server, whose /nginx-health is `return 200`.
NGINX_ONLY_HOST = "nginx-ceiling"
SERVERS = ("gunicorn", "uwsgi")
# Where each server answers plain HTTP in the bench: gunicorn's own port, uWSGI's extra http-socket.
DIRECT = {"gunicorn": "http://gunicorn:8000", "uwsgi": "http://uwsgi:8001"}
# nginx as shipped, over the servers' Unix sockets (APP_TRANSPORT=unix in .env).
VIA_NGINX = {"gunicorn": "http://nginx-gunicorn:8080", "uwsgi": "http://nginx-uwsgi:8080"}
# The same nginx containers on their HTTPS port: TLS, HTTP/1.1 and HTTP/2 (section 8).
VIA_NGINX_TLS = {"gunicorn": "https://nginx-gunicorn:8443", "uwsgi": "https://nginx-uwsgi:8443"}
# The same nginx config and server containers over TCP, as across hosts (section 1 only).
VIA_NGINX_TCP = {"gunicorn": "http://nginx-gunicorn-tcp:8080", "uwsgi": "http://nginx-uwsgi-tcp:8080"}
# Section 1's pairs again with the app server and nginx on separate cores (their names' suffix).
SEPARATE_CORES = ", separate cores"
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
    "nginx-gunicorn-tcp": ("gunicorn",),
    "nginx-uwsgi-tcp": ("uwsgi",),
    "nginx-hello-gunicorn": ("hello-gunicorn",),
    "nginx-hello-uwsgi": ("hello-uwsgi",),
}
# Section 9: each server straight, on SQLite (the containers above) and on PostgreSQL with
# persistent connections and with psycopg's pool (DB_CONNECTIONS); the -pg ones need postgres running.
DATABASES = ("sqlite", "postgres persistent", "postgres pool")
DB_DIRECT = {
    ("gunicorn", "sqlite"): DIRECT["gunicorn"],
    ("gunicorn", "postgres persistent"): "http://gunicorn-pg:8000",
    ("gunicorn", "postgres pool"): "http://gunicorn-pgpool:8000",
    ("uwsgi", "sqlite"): DIRECT["uwsgi"],
    ("uwsgi", "postgres persistent"): "http://uwsgi-pg:8001",
    ("uwsgi", "postgres pool"): "http://uwsgi-pgpool:8001",
}
# Section 9's endpoints: two reads, and the write (POST /items, a new key per request: wrk_items.lua).
DB_ENDPOINTS = {"db": "/db", "queries?n=20": "/queries?n=20", "items": "/items"}
BACKENDS |= {
    service: (service, "postgres") for service in ("gunicorn-pg", "gunicorn-pgpool", "uwsgi-pg", "uwsgi-pgpool")
}
# Section 10: each server under both worker models (APP_WORKER_MODEL), through its own nginx; threads are
# the containers above, gevent the -gevent ones. Ordinary requests' rates, and the open-stream capacity.
MODELS = ("threads", "gevent")
VIA_NGINX_MODEL = {
    ("gunicorn", "threads"): VIA_NGINX["gunicorn"],
    ("gunicorn", "gevent"): "http://nginx-gunicorn-gevent:8080",
    ("uwsgi", "threads"): VIA_NGINX["uwsgi"],
    ("uwsgi", "gevent"): "http://nginx-uwsgi-gevent:8080",
}
MODEL_ENDPOINTS = ("plaintext", "queries?n=20")
BACKENDS |= {"nginx-gunicorn-gevent": ("gunicorn-gevent",), "nginx-uwsgi-gevent": ("uwsgi-gevent",)}
# Section 11: each server straight with the app's metrics on (shipped, the containers above) and off.
METRICS_DIRECT = {
    ("gunicorn", "on"): DIRECT["gunicorn"],
    ("gunicorn", "off"): "http://gunicorn-nometrics:8000",
    ("uwsgi", "on"): DIRECT["uwsgi"],
    ("uwsgi", "off"): "http://uwsgi-nometrics:8001",
}
PEER_BACKENDS = {8081: "peer-gunicorn-defaults", 8082: "peer-gunicorn-template", 8083: "peer-uwsgi-defaults"}
# The naive peer's own proxy tax: gunicorn's defaults straight, and behind its bare proxy_pass.
NAIVE_DIRECT, NAIVE_VIA_NGINX = "http://peer-gunicorn-defaults:8000", PEERS["peer: gunicorn defaults"]


def label(server: str, variant: str, endpoint: str) -> str:
    """A run's label in sections 9 and 10: server, the setting measured (database, worker model), endpoint."""
    return f"{server} {variant} {endpoint}"


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
    # Section 8. Seconds of each TLS handshake measurement (openssl s_time's -time: it runs that long to
    # a second more), and how many s_time processes run at once (each one connection at a time).
    handshake_s: int
    handshake_clients: int
    tls_versions: tuple[str, ...]
    # How many times each HTTP/2 and HTTP/1.1 run fetches the page's whole set of static files: a multiple
    # of the HTTP/1.1 connections (6), so that each of them fetches the whole set too (bench_https.py).
    page_sets: int
    # Section 9: the endpoints (DB_ENDPOINTS' names) measured on each database.
    db_endpoints: tuple[str, ...]
    # Section 10: the streams scenario's ramp per worker model (stream_capacity.py's STREAMS_STEP,
    # STREAMS_STEP_S, STREAMS_MAX): gevent in hundreds to past the goal of 2,000, threads two at a time
    # past its 2 x 4 threads.
    streams_ramps: tuple[tuple[str, tuple[int, int, int]], ...]
    # Section 12: rounds of each nginx change against the shipped config (a run each, duration_s long).
    nginx_cost_rounds: int


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
    handshake_s=2,
    handshake_clients=4,
    tls_versions=("1.3", "1.2"),
    page_sets=240,
    db_endpoints=tuple(DB_ENDPOINTS),
    streams_ramps=(("threads", (2, 10, 16)), ("gevent", (500, 20, 3000))),
    # Many short pairs: three rounds of 6 s left a change's cost inside the noise between runs.
    nginx_cost_rounds=6,
)
PROFILES = {
    # About 35 minutes on 2 cores, once the images are built.
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
        handshake_s=1,
        page_sets=48,
        db_endpoints=("db", "items"),
        streams_ramps=(("threads", (2, 6, 4)), ("gevent", (50, 6, 100))),
        nginx_cost_rounds=1,
    ),
}
