"""Section 8 of `make bench`: HTTPS beside plain HTTP, through the same nginx containers.

Three measurements, each in the bench's rounds, the two sides in turns:

1. /plaintext over kept-alive connections, HTTPS against plain HTTP, for both servers (wrk, as in
   sections 1-7: Debian's wrk speaks TLS through OpenSSL; it has no HTTP/2).
2. New TLS handshakes per second, full and resumed, TLS 1.3 and 1.2 (openssl s_time, driven by
   probe.py's `handshakes`), and nginx's CPU per handshake; beside them, for scale, a new plain TCP
   connection per request (wrk with `Connection: close`).
3. A page's set of small static files over HTTP/2 on one connection against HTTP/1.1 on six (h2load).

None of the clients verifies the certificate: verifying is the client's cost, not nginx's.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bench_targets import HOST, NGINX_ONLY_HOST, SERVERS, VIA_NGINX, VIA_NGINX_TLS
from report_analysis import NO_TLS_LABEL

if TYPE_CHECKING:
    from bench import Bench

T = TypeVar("T")
SECTION = "https"
# Handshakes and static files involve nginx alone: one nginx container does (the gunicorn one).
NGINX_SERVICE = "nginx-gunicorn"
HANDSHAKE_URL = VIA_NGINX_TLS["gunicorn"] + "/nginx-health"
# The same request on a new plain TCP connection each time: what a connection costs nginx without TLS.
NO_TLS_URL = VIA_NGINX["gunicorn"] + "/nginx-health"
SESSIONS = {"new": "full", "reuse": "resumed"}
# The page's static files (app/stack/static/bench/, README.md there), as collectstatic lays them out.
PAGE_DIR = Path(__file__).resolve().parents[2] / "app" / "stack" / "static" / "bench"
PAGE_URL = VIA_NGINX_TLS["gunicorn"] + "/static/bench/"
PAGE_SUFFIXES = (".css", ".js", ".svg")
# Connections a browser opens to one origin over HTTP/1.1 (Chrome's and Firefox's default).
H1_CONNECTIONS = 6
# Browsers fetching the page at once, each on connections of its own. More than one because nginx
# ends an HTTP/2 connection after keepalive_requests (1,000 by default) with GOAWAY, which a browser
# follows by reconnecting and h2load does not: each connection must stay under it.
PAGE_BROWSERS = 8
NGINX_KEEPALIVE_REQUESTS = 1000
# h2load's summary lines, and what the connection negotiated.
H2LOAD_FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s")
H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
H2LOAD_TRAFFIC = re.compile(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers \(space savings ([\d.]+)%\)")
H2LOAD_ALPN = re.compile(r"Application protocol: (\S+)")
H2LOAD_TLS = re.compile(r"TLS Protocol: (\S+)")
UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def handshake_label(tls: str, session: str) -> str:
    return f"TLS {tls} {SESSIONS[session]}"


def page_label(protocol: str) -> str:
    return f"page {protocol}"


def page_files(directory: Path = PAGE_DIR) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in PAGE_SUFFIXES)


def parse_h2load(out: str) -> dict:
    """h2load's summary: requests, how many succeeded (2xx and 3xx), the run's time, header bytes, ALPN."""
    finished = H2LOAD_FINISHED.search(out)
    requests = H2LOAD_REQUESTS.search(out)
    if finished is None or requests is None:
        raise RuntimeError(f"h2load printed no summary:\n{out[-1500:]}")
    traffic = H2LOAD_TRAFFIC.search(out)
    alpn = H2LOAD_ALPN.search(out)
    tls = H2LOAD_TLS.search(out)
    total, _, done, succeeded, failed, errored, timeout = (int(n) for n in requests.groups())
    return {
        "requests": total,
        "done": done,
        "succeeded": succeeded,
        "failed": failed + errored + timeout,
        "seconds": float(finished.group(1)) * UNIT_S[finished.group(2)],
        "rps": float(finished.group(3)),
        "bytes": int(traffic.group(1)) if traffic else 0,
        "header_bytes": int(traffic.group(2)) if traffic else 0,
        "header_savings": float(traffic.group(3)) / 100 if traffic else math.nan,
        "alpn": alpn.group(1) if alpn else "",
        "tls": tls.group(1) if tls else "",
    }


def https(bench: Bench) -> None:
    print("8. HTTPS beside plain HTTP, through the same nginx", flush=True)
    plaintext(bench)
    handshakes(bench)
    page(bench)


def plaintext(bench: Bench) -> None:
    """/plaintext over kept-alive connections: plain HTTP and HTTPS in turns, each server, every round."""
    for round_no, reverse in bench.rounds():
        for server in reversed(SERVERS) if reverse else SERVERS:
            pair = [("http", VIA_NGINX[server]), ("https", VIA_NGINX_TLS[server])]
            for scheme, base in reversed(pair) if reverse else pair:
                bench.wrk(SECTION, f"{server} {scheme}", base + "/plaintext", round_no)


def handshakes(bench: Bench) -> None:
    """New connections: full and resumed TLS handshakes (s_time), and plain TCP (wrk) for scale."""
    profile = bench.profile
    results: list[dict] = []
    bench.extra["https_handshakes"] = {
        "url": HANDSHAKE_URL,
        "nginx_service": NGINX_SERVICE,
        "clients": profile.handshake_clients,
        "seconds": profile.handshake_s,
        "results": results,
    }
    cells = [(tls, session) for tls in profile.tls_versions for session in SESSIONS]
    for round_no, reverse in bench.rounds():
        for tls, session in reversed(cells) if reverse else cells:
            label = handshake_label(tls, session)
            with bench.step(SECTION, label, round_no, "probe"):
                results.append(_handshake_run(bench, tls, session, label, round_no))
        headers = ("Connection: close",)
        bench.wrk(SECTION, NO_TLS_LABEL, NO_TLS_URL, round_no, host=NGINX_ONLY_HOST, headers=headers)


def with_cpu(bench: Bench, label: str, round_no: int, run: Callable[[], T]) -> tuple[T, dict]:
    """run()'s result, and the fields every section-8 figure carries: CPU seconds over the whole
    run (window_s, docker exec and the tool's start included), per container and the whole machine."""
    before = bench.cpu_reading(SECTION, label, round_no)
    started = time.monotonic()
    value = run()
    used = bench.cpu_used(before, SECTION, label, round_no)
    return value, {
        "label": label,
        "round": round_no,
        "window_s": time.monotonic() - started,
        "cpu_s": used[0] if used else {},
        "machine_busy_s": used[1] if used else math.nan,
        "missing": bench.missing_in(SECTION, label, round_no),
    }


def _handshake_run(bench: Bench, tls: str, session: str, label: str, round_no: int) -> dict:
    profile = bench.profile
    bench.focus(HANDSHAKE_URL)
    argv = ["--tls", tls, "--session", session, "--clients", str(profile.handshake_clients)]
    argv += ["--seconds", str(profile.handshake_s)]
    result, measured = with_cpu(
        bench,
        label,
        round_no,
        lambda: bench.probe("handshakes", HANDSHAKE_URL, *argv, timeout=profile.handshake_s + 120),
    )
    if not result["handshakes"]:
        raise RuntimeError(f"openssl s_time made no connection to {result['address']}")
    result |= measured | {"rate": result["handshakes"] / result["seconds"]}
    nginx_us = result["cpu_s"].get(NGINX_SERVICE, math.nan) / result["handshakes"] * 1e6
    print(
        f"  {SECTION:<10} {label:<34} r{round_no} {result['rate']:8.0f} /s     resumed {result['resumed']:>6} "
        f"of {result['handshakes']:<6} nginx {nginx_us:6.0f} us each ({result['group']})",
        flush=True,
    )
    if session == "reuse" and result["resumed"] < result["handshakes"]:
        print(f"  {SECTION:<10} {label}: not every connection resumed its session (see the report)", flush=True)
    return result


def page(bench: Bench) -> None:
    """The page's static files fetched by PAGE_BROWSERS browsers at once, each with HTTP/2 on one
    connection against HTTP/1.1 on six, in turns every round."""
    files = page_files()
    sets = bench.profile.page_sets
    h1_connections = PAGE_BROWSERS * H1_CONNECTIONS
    if not files or sets % h1_connections:
        raise RuntimeError(f"need files in {PAGE_DIR} and page_sets a multiple of {h1_connections}, got {sets}")
    if len(files) * sets // PAGE_BROWSERS > NGINX_KEEPALIVE_REQUESTS:
        raise RuntimeError(f"{sets} sets would put over {NGINX_KEEPALIVE_REQUESTS} requests on one HTTP/2 connection")
    results: list[dict] = []
    bench.extra["https_page"] = {
        "url": PAGE_URL,
        "nginx_service": NGINX_SERVICE,
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "sets": sets,
        "browsers": PAGE_BROWSERS,
        "h1_connections": H1_CONNECTIONS,
        "results": results,
    }
    # HTTP/2: the whole set in flight at once on each browser's connection. HTTP/1.1: one request at
    # a time on each connection (browsers do not pipeline). h2load gives each connection its share of
    # the requests and has each go through the whole list from the top, so with page_sets a multiple
    # of the connections every connection fetches every file, and each file is fetched `sets` times.
    shapes = {"HTTP/2": (PAGE_BROWSERS, len(files), "h2"), "HTTP/1.1": (h1_connections, 1, "http/1.1")}
    urls = [PAGE_URL + f.name for f in files]
    for round_no, reverse in bench.rounds():
        items = list(shapes.items())
        for protocol, (connections, streams, alpn) in reversed(items) if reverse else items:
            label = page_label(protocol)
            with bench.step(SECTION, label, round_no, "probe"):
                result = _page_run(bench, urls, sets, connections, streams, alpn, label, round_no)
                results.append(result | {"protocol": protocol})


def _page_run(
    bench: Bench, urls: list[str], sets: int, connections: int, streams: int, alpn: str, label: str, round_no: int
) -> dict:
    bench.focus(PAGE_URL)
    argv = ["h2load", "-n", str(len(urls) * sets), "-c", str(connections), "-m", str(streams)]
    argv += ["--h1"] if alpn == "http/1.1" else []
    # The app's Host (the URL's would reach nginx's default server), and gzip as browsers ask.
    argv += ["-H", f"host: {HOST}", "-H", "accept-encoding: gzip", *urls]
    out, measured = with_cpu(bench, label, round_no, lambda: bench.containers.exec("loadgen", *argv, timeout=180))
    result = parse_h2load(out)
    if result["alpn"] != alpn:
        raise RuntimeError(f"h2load negotiated {result['alpn'] or 'nothing'}, not {alpn}")
    if not result["succeeded"] or result["failed"]:
        raise RuntimeError(f"h2load: {result['failed']} of {result['requests']} requests failed:\n{out[-1500:]}")
    result |= measured | {"connections": connections, "streams": streams}
    nginx_us = result["cpu_s"].get(NGINX_SERVICE, math.nan) / result["requests"] * 1e6
    print(
        f"  {SECTION:<10} {label:<34} r{round_no} {result['rps']:8.0f} req/s  "
        f"{result['seconds'] * 1000 / sets:6.2f} ms per set  nginx {nginx_us:5.0f} us/req  failed {result['failed']}",
        flush=True,
    )
    return result
