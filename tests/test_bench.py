"""`make bench`: the report's verdicts on known figures, and a real tiny run on real containers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import bench_sections
import pytest
import report  # loadtest/bench/report.py
import report_previous
import report_sections_1_3
import report_sections_12
from compose_stack import ensure_secret_file
from harness import ROOT, read_dotenv


def run(section: str, label: str, rps: float, round_no: int = 1, generator: float = 0.1, **extra: float) -> dict:
    return {
        "section": section,
        "label": label,
        "round": round_no,
        "rps": rps,
        "p99_ms": extra.get("p99_ms", 10.0),
        "errors": 0,
        "non_2xx": 0,
        "generator_cores": generator,
        "generator_threads": 1,
        "machine_busy_cores": 1.9,
        "cpu": {},
        "busiest_worker_share": extra.get("share", math.nan),
    }


def test_proxy_tax_is_the_median_of_per_round_ratios_against_the_target():
    runs = []
    for round_no, (direct, nginx) in enumerate([(1000, 960), (1100, 1000), (900, 880)], start=1):
        runs += [
            run("proxy-tax", "gunicorn direct", direct, round_no),
            run("proxy-tax", "gunicorn nginx", nginx, round_no),
        ]
    for round_no, (direct, nginx) in enumerate([(1000, 900), (1000, 930)], start=1):
        runs += [run("proxy-tax", "uwsgi direct", direct, round_no), run("proxy-tax", "uwsgi nginx", nginx, round_no)]
    # The TCP path is paired with the same direct runs, round by round.
    runs += [run("proxy-tax", "gunicorn nginx-tcp", rps, n) for n, rps in enumerate([990, 1045, 870], start=1)]
    tax = report.proxy_tax(runs)
    assert tax["gunicorn"]["ratio"] == pytest.approx(0.96)  # ratios 0.96, 0.909, 0.978
    assert tax["gunicorn"]["met"] and tax["gunicorn"]["shipped"]
    assert tax["uwsgi"]["ratio"] == pytest.approx(0.915)
    assert not tax["uwsgi"]["met"]
    assert tax["gunicorn, TCP"]["ratio"] == pytest.approx(870 / 900)  # 0.99, 0.95, 0.967
    assert not tax["gunicorn, TCP"]["shipped"]
    assert "uwsgi, TCP" not in tax  # no runs, no row


def test_the_pairs_on_separate_cores_are_reported_beside_the_shipped_ones_and_not_judged(tmp_path):
    def pair(name: str, direct: float, nginx: float) -> list[dict]:
        cpu = {"nginx-gunicorn": 0.25, "gunicorn": 1.0}
        return [
            {**run("proxy-tax", f"{name} direct", direct), "cpu": cpu},
            {**run("proxy-tax", f"{name} nginx", nginx), "cpu": cpu},
        ]

    runs = pair("gunicorn", 4000, 3200) + pair("gunicorn, separate cores", 2500, 2750)
    data = {"runs": runs, "separate_cores": {"app": "0", "nginx": "1"}}
    tax = report.proxy_tax(runs)
    assert tax["gunicorn, separate cores"]["ratio"] == pytest.approx(1.1)
    assert not tax["gunicorn, separate cores"]["shipped"]
    md = "\n".join(report_sections_1_3.proxy_tax_section(report.Results(data, tmp_path)))
    assert "| gunicorn, separate cores | 2,500 (one run) | 2,750 (one run) | 1.100 (1.10) |" in md
    assert "(placement) |" in md and "| gunicorn | 4,000" in md and "**not met** |" in md
    # The paragraph gives the cores and the ratio measured there, in place of the untested advice.
    assert "held to CPU 0 and nginx and the generator to CPU 1" in md
    assert "gunicorn through nginx kept 1.100 of its direct rate, 2,750 req/s against 3,200 with the cores shared" in md
    assert "What else would close the gap" not in md
    # A lopsided round counts there while the app server had one core, whose workers take turns on it.
    lopsided = runs + [
        {
            **r,
            "round": 2,
            "rps": r["rps"] * (1.2 if r["label"].endswith("direct") else 1.0),
            "busiest_worker_share": 1.0,
        }
        for r in runs[2:]
    ]
    assert report.proxy_tax(lopsided, "0")["gunicorn, separate cores"]["ratio"] == pytest.approx((1.1 + 1.1 / 1.2) / 2)
    assert report.proxy_tax(lopsided, "0-1")["gunicorn, separate cores"]["ratio"] == pytest.approx(1.1)
    one_core = "\n".join(report_sections_1_3.proxy_tax_section(report.Results({**data, "runs": lopsided}, tmp_path)))
    assert "on one core the app server's workers take turns" in one_core and "one worker did" not in one_core
    # A run without them (an older raw.json) keeps the advice.
    older = "\n".join(report_sections_1_3.proxy_tax_section(report.Results({"runs": runs[:2]}, tmp_path)))
    assert "What else would close the gap" in older and "separate cores" not in older


def test_the_report_puts_each_headline_figure_beside_the_previous_runs():
    def data(nginx_rps: float, share: float, profile: str = "full") -> dict:
        runs = [run("proxy-tax", "gunicorn direct", 1000), run("proxy-tax", "gunicorn nginx", nginx_rps)]
        runs += [run("peers-paced", "ours: gunicorn plaintext@1000", 1000, share=share)]
        return {"profile": profile, "machine": {"date": "then"}, "runs": runs}

    table = report_previous.comparison(data(950, 0.52), data(730, 0.87))
    assert "| proxy tax, gunicorn, Unix socket (shipped) | 0.73 | 0.95 |" in table
    assert "| `/plaintext` through nginx, gunicorn (req/s) | 730 | 950 |" in table
    assert "| busiest worker's share, gunicorn `/plaintext` steady (most of any round) | 0.87 | 0.52 |" in table
    # A figure only one run has shows "-" in the other's column; one neither has, no row.
    with_streams = {**data(950, 0.52), "stream_capacity": {"gunicorn threads": {"capacity": 8}}}
    assert "| open event streams held, gunicorn threads | - | 8 |" in report_previous.comparison(
        with_streams, data(730, 0.87)
    )
    assert "| proxy tax, uWSGI, Unix socket (shipped) |" not in "".join(table)
    # No previous run, or one of another profile (a CI's tiny bench): no comparison.
    assert report_previous.comparison(data(950, 0.5), None) == []
    assert report_previous.comparison(data(950, 0.5, "tiny"), data(730, 0.87)) == []


def test_an_nginx_change_is_paired_by_round_and_stands_out_only_if_every_round_agrees():
    def nginx_run(label: str, round_no: int, rps: float, nginx_cores: float) -> dict:
        return {**run("nginx-cost", label, rps, round_no), "cpu": {"nginx-gunicorn": nginx_cores}}

    runs = [
        nginx_run("gzip off shipped", 1, 2000, 0.24),  # 120 us per request
        nginx_run("gzip off changed", 1, 2100, 0.21),  # 100 us
        nginx_run("gzip off shipped", 2, 2000, 0.22),  # 110 us
        nginx_run("gzip off changed", 2, 2000, 0.20),  # 100 us
        nginx_run("gzip off changed", 3, 2000, 0.20),  # no shipped run in round 3: left out
    ]
    found = report_sections_12.change_figures(runs, "gzip off")
    assert found["differences"] == pytest.approx([-20, -10])
    assert found["difference"] == pytest.approx(-15) and found["clear"]
    assert found["ratio"] == pytest.approx(1.025)
    runs[3]["cpu"]["nginx-gunicorn"] = 0.24  # round 2 now went the other way: inside the noise
    assert not report_sections_12.change_figures(runs, "gzip off")["clear"]
    assert report_sections_12.change_figures(runs, "access log off") is None


def test_a_round_where_one_worker_did_the_work_is_left_out_of_the_proxy_tax():
    # Round 1: one gunicorn worker took every direct connection, so direct is low and the ratio flatters nginx.
    runs = [
        run("proxy-tax", "gunicorn direct", 1500, 1, share=0.98),
        run("proxy-tax", "gunicorn nginx", 3000, 1, share=0.52),
        run("proxy-tax", "gunicorn direct", 4000, 2, share=0.51),
        run("proxy-tax", "gunicorn nginx", 3000, 2, share=0.50),
        run("proxy-tax", "gunicorn direct", 4200, 3, share=0.55),
        run("proxy-tax", "gunicorn nginx", 3360, 3, share=0.53),
    ]
    tax = report.proxy_tax(runs)["gunicorn"]
    assert tax["ratio"] == pytest.approx(0.775)  # rounds 2 and 3 only (0.75, 0.80); with round 1 (2.0) it is 0.80
    assert tax["uneven_rounds"] == [0]
    assert not tax["met"]
    # With every round lopsided there is nothing else to judge by: all of them count.
    lopsided = [dict(r, busiest_worker_share=0.9) for r in runs]
    assert report.proxy_tax(lopsided)["gunicorn"]["ratio"] == pytest.approx(0.80)
    assert report.proxy_tax(lopsided)["gunicorn"]["uneven_rounds"] == [0, 1, 2]


def test_ttfb_delta_compares_p50s_and_ignores_failed_requests():
    def timings(values: list[float | None]) -> list[dict]:
        return [{"first_byte_ms": v, "status": 200 if v is not None else 0} for v in values]

    data = {
        "urls": {"gunicorn": {"direct": "d", "nginx": "n"}},
        "results": {"d": timings([1.0, 1.2, 1.1, None]), "n": timings([7.0, 7.5, 6.9])},
    }
    deltas = report.ttfb_deltas(data)
    assert deltas["gunicorn"]["delta_p50"] == pytest.approx(7.0 - 1.1)
    assert not deltas["gunicorn"]["met"]
    assert deltas["gunicorn"]["direct"]["failed"] == 1


def test_sweep_judges_the_shipped_point_against_the_best_median():
    runs = [
        run("sweep", "gunicorn 2x4", 850),
        run("sweep", "gunicorn 2x4", 870, 2),
        run("sweep", "gunicorn 4x1", 1000),
        run("sweep", "gunicorn 4x1", 990, 2),
        run("sweep", "uwsgi 2x4", 900),
        run("sweep", "uwsgi 1x1", 500),
    ]
    result = report.sweep(runs, (2, 4))
    assert result["gunicorn"]["best"] == (4, 1)
    # Paired by round, as the proxy tax: median of 850/1000 and 870/990.
    assert result["gunicorn"]["fraction"] == pytest.approx((850 / 1000 + 870 / 990) / 2)
    assert not result["gunicorn"]["met"]
    assert result["uwsgi"]["best"] == (2, 4)
    assert result["uwsgi"]["met"]


def test_ours_matches_a_peer_only_with_the_peak_and_the_steady_p99_both_in_range():
    assert report.peer_matched(1.46, 3.0, 2.5)  # half a millisecond: inside the 1 ms allowance
    assert report.peer_matched(0.96, 22.0, 20.5)  # 7% slower at p99: inside 10%
    assert not report.peer_matched(0.90, 2.0, 2.0)  # peak too low
    assert not report.peer_matched(2.0, 30.0, 20.0)  # p99 50% above


def test_a_generator_near_a_full_core_is_flagged_as_a_possible_limit():
    assert report.generator_note([run("x", "a", 1, generator=0.95)]).endswith("(**yes**)")
    assert report.generator_note([run("x", "a", 1, generator=0.3)]).endswith("(no)")


def test_the_one_percentile_is_nearest_rank_an_observed_sample_never_interpolated():
    import run as locust_run  # loadtest/run.py: its p50/p95/p99 come from the same function
    from percentiles import percentile  # loadtest/bench/percentiles.py

    assert locust_run.percentile is percentile
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.50) == 2.0  # in any order; not 2.5
    assert percentile([float(x) for x in range(1, 101)], 0.95) == 95.0
    assert percentile([1.0, 2.0], 0.99) == 2.0
    assert percentile([7.0, 3.0], 0.0) == 3.0
    assert math.isnan(percentile([], 0.50))
    with pytest.raises(ValueError):
        percentile([1.0], 95)  # a fraction, not a percent


def test_https_against_http_is_paired_by_round_and_reads_nginx_cpu_per_request():
    runs = []
    for round_no, (http, https) in enumerate([(3000, 2400), (3300, 2900), (2800, 2100)], start=1):
        for scheme, rps in (("http", http), ("https", https)):
            r = run("https", f"gunicorn {scheme}", rps, round_no)
            r["cpu"] = {"nginx-gunicorn": rps * (60e-6 if scheme == "http" else 150e-6), "gunicorn": 0.5}
            runs.append(r)
    result = report.https_plaintext(runs)
    assert set(result) == {"gunicorn"}  # no uwsgi runs, no row
    assert result["gunicorn"]["ratio"] == pytest.approx(0.8)  # 0.8, 0.879, 0.75
    assert result["gunicorn"]["cost"]["http"]["nginx"] == pytest.approx(60)
    assert result["gunicorn"]["cost"]["https"]["nginx"] == pytest.approx(150)


def handshake(label: str, session: str, count: int, resumed: int, nginx_s: float) -> dict:
    """One probe.py handshakes result as bench_https.py records it: 2 s, nginx_s of nginx's CPU."""
    return {
        "label": label,
        "tls": label.split()[1],
        "session": session,
        "round": 1,
        "seconds": 2.0,
        "window_s": 2.0,
        "rate": count / 2.0,
        "handshakes": count,
        "resumed": resumed,
        "group": "X25519MLKEM768",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "cpu_s": {"nginx-gunicorn": nginx_s, "loadgen": 1.5},
        "machine_busy_s": 3.8,
    }


def test_a_reuse_row_counts_only_if_every_connection_resumed():
    data = {
        "https_handshakes": {
            "nginx_service": "nginx-gunicorn",
            "results": [
                handshake("TLS 1.3 full", "new", 1000, 0, 1.2),
                handshake("TLS 1.3 resumed", "reuse", 1200, 1200, 1.2),
                # s_time asked to resume and nginx did not, for one connection in ten.
                handshake("TLS 1.2 resumed", "reuse", 2000, 1800, 1.0),
            ],
        }
    }
    rows = report.handshakes(data)
    assert rows["TLS 1.3 full"]["nginx_us"] == pytest.approx(1200)
    assert rows["TLS 1.3 resumed"]["nginx_us"] == pytest.approx(1000)
    assert rows["TLS 1.3 full"]["as_labelled"] and rows["TLS 1.3 resumed"]["as_labelled"]
    assert not rows["TLS 1.2 resumed"]["as_labelled"]
    assert rows["TLS 1.2 resumed"]["generator_cores"] == pytest.approx(0.75)


# h2load 1.64's summary, as the loadgen image prints it (progress lines left out).
H2LOAD_OUT = """starting benchmark...
spawning thread #0: 6 total client(s). 60 total requests
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: http/1.1

finished in 34.14ms, 1757.62 req/s, 1.62MB/s
requests: 60 total, 60 started, 60 done, 58 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 58 2xx, 0 3xx, 2 4xx, 0 5xx
traffic: 56.66KB (58020) total, 27.48KB (28140) headers (space savings 0.00%), 24.32KB (24900) data
"""


def test_h2load_summary_and_page_ratio():
    import bench_https  # loadtest/bench/bench_https.py
    from bench_targets import PROFILES

    parsed = bench_https.parse_h2load(H2LOAD_OUT)
    assert parsed["requests"] == 60 and parsed["succeeded"] == 58 and parsed["failed"] == 2
    assert parsed["seconds"] == pytest.approx(0.03414)
    assert parsed["alpn"] == "http/1.1" and parsed["header_bytes"] == 28140
    assert bench_https.parse_h2load(H2LOAD_OUT.replace("34.14ms", "1.50s"))["seconds"] == pytest.approx(1.5)
    with pytest.raises(RuntimeError, match="no summary"):
        bench_https.parse_h2load("connect: Connection refused")
    # Each file fetched `sets` times, so every HTTP/1.1 connection of every browser gets the whole set,
    # and no HTTP/2 connection reaches nginx's keepalive_requests (it would be ended with GOAWAY).
    for profile in PROFILES.values():
        assert profile.page_sets % (bench_https.PAGE_BROWSERS * bench_https.H1_CONNECTIONS) == 0
        per_h2_connection = len(bench_https.page_files()) * profile.page_sets // bench_https.PAGE_BROWSERS
        assert per_h2_connection <= bench_https.NGINX_KEEPALIVE_REQUESTS
    results = [
        {"protocol": "HTTP/2", "round": 1, "rps": 6000.0},
        {"protocol": "HTTP/1.1", "round": 1, "rps": 4000.0},
        {"protocol": "HTTP/2", "round": 2, "rps": 5000.0},
        {"protocol": "HTTP/1.1", "round": 2, "rps": 5000.0},
    ]
    ratio = report.page_ratio({"https_page": {"results": results}})
    assert ratio["ratios"] == [1.5, 1.0] and ratio["ratio"] == pytest.approx(1.25)


def test_the_template_has_every_prose_block_the_code_asks_for_and_no_other():
    import re

    import report_markdown

    code = "".join(p.read_text() for p in (ROOT / "loadtest" / "bench").glob("report*.py"))
    asked = set(re.findall(r'(?:para|text)\(\s*"(\w+)"', code))
    asked |= {f"{name}_title" for name in re.findall(r'heading\("(\w+)"\)', code)}
    asked |= set(re.findall(r'else "(\w+)"\)', code))  # text("streams_all" if ... else "streams_some")
    assert asked == set(report_markdown.blocks())
    assert report_markdown.blocks()["title"] == "# Benchmark report"
    assert report_markdown.text("not_measured", items="a; b") == "**Not measured** (n/a above): a; b."


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_tiny_bench_runs_every_section_on_real_containers(tmp_path):
    ensure_secret_file()  # what `make bench` does first
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "loadtest" / "bench" / "bench.py"),
            "--profile",
            "tiny",
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = (tmp_path / "report.md").read_text()
    for heading in (
        "## 1. Proxy tax",
        "## 2. gunicorn vs uWSGI",
        "## 3. The peers' configurations",
        "## 4. Ceilings",
        "## 5. Streaming: time to first byte",
        "## 6. Workers x threads",
        "## 7. The load generator",
        "## 8. HTTPS",
        "## 9. Databases",
        "## 10. Worker models",
        "## 11. What monitoring costs",
        "## 12. nginx's per-request work",
    ):
        assert heading in text
    for chart in ("proxy_tax.png", "servers.png", "peers.png", "ceilings.png", "ttfb.png", "sweep.png"):
        assert (tmp_path / chart).stat().st_size > 1000, chart
        assert f"]({chart})" in text

    data = json.loads((tmp_path / "raw.json").read_text())
    sections = {r["section"] for r in data["runs"]}
    assert sections == {
        "proxy-tax",
        "servers",
        "peers",
        "peers-paced",
        "ceilings",
        "sweep",
        "generator",
        "https",
        "databases",
        "models",
        "metrics",
        "nginx-cost",
    }
    # Every nginx change applied to the running config (the run fails when one matches nothing).
    changes = {r["label"] for r in data["runs"] if r["section"] == "nginx-cost"}
    assert changes == {f"{name} {how}" for name in report_sections_12.CHANGES for how in ("shipped", "changed")}
    # Section 1 measured the shipped paths, the Unix-socket ones and the naive peer's, and read the CPU
    # of the nginx and the app server on each (the report's per-request table rests on them).
    tax = report.proxy_tax(data["runs"])
    assert set(tax) == set(report.PROXY_PATHS)
    # The separate-cores pairs ran with the app server on the first half of the cores, nginx on the rest.
    cores = os.cpu_count() or 1
    halves = {
        "app": bench_sections.cpu_list(0, cores // 2 - 1),
        "nginx": bench_sections.cpu_list(cores // 2, cores - 1),
    }
    assert data["separate_cores"] == halves
    for name, path in tax.items():
        for r in path["nginx_runs"]:
            assert r["cpu"][path["nginx_service"]] > 0 and r["cpu"][path["app_service"]] > 0, name
    for r in data["runs"]:
        assert r["requests"] > 0, r["label"]
        assert r["errors"] == 0 and r["non_2xx"] == 0, r
        # The CPU figures the report rests on were read, not left empty.
        assert not math.isnan(r["generator_cores"]) and r["generator_cores"] > 0, r["label"]
        assert r["machine_busy_cores"] > 0
    for server, urls in data["ttfb"]["urls"].items():
        for url in urls.values():
            assert all(t["status"] == 200 and t["first_byte_ms"] for t in data["ttfb"]["results"][url]), (server, url)
    for name, result in data["concurrent_streams"]["results"].items():
        assert report.concurrent_summary(result)["streams_ok"] == data["concurrent_streams"]["clients"], name
    assert data["locust"]["requests"] > 0 and data["locust"]["failures"] == 0
    # Section 8 measured every cell, with numbers: HTTPS and plain HTTP through both nginx containers, each
    # kind of handshake (every -reuse connection resumed, no -new one did) with nginx's CPU per handshake,
    # and the page's files over HTTP/2 and HTTP/1.1, every request answered.
    https = report.https_plaintext(data["runs"])
    assert set(https) == {"gunicorn", "uwsgi"}
    for server, pair in https.items():
        assert pair["https"] > 0 and pair["ratio"] > 0, server
        assert pair["cost"]["https"]["nginx"] > 0, server
    kinds = report.handshakes(data)
    assert set(kinds) == {f"TLS {v} {s}" for v in ("1.3", "1.2") for s in ("full", "resumed")}
    for label, kind in kinds.items():
        assert kind["handshakes"] > 0 and kind["as_labelled"] and kind["nginx_us"] > 0, (label, kind["resumed"])
    assert kinds["TLS 1.3 resumed"]["resumed"] == kinds["TLS 1.3 resumed"]["handshakes"]
    page = data["https_page"]
    assert {r["protocol"] for r in page["results"]} == {"HTTP/2", "HTTP/1.1"}
    for r in page["results"]:
        assert r["succeeded"] == r["requests"] == page["files"] * page["sets"], r["protocol"]
    assert report.page_ratio(data)["ratio"] > 0
    https_section = text[text.index("## 8. HTTPS") : text.index("## 9. Databases")]
    assert "n/a" not in https_section and "Not resumed" not in https_section
    # Section 9: every server on every database setting, reads and the write (every POST stored a row:
    # wrk counts any non-2xx above), both comparisons, and each PostgreSQL container within workers x threads.
    for endpoint in data["settings"]["db_endpoints"]:
        for server, figures in report.database_figures(data["runs"], endpoint).items():
            assert all(figures["runs"].values()), (server, endpoint)
            assert set(figures["ratios"]) == {"postgres/sqlite", "pool/persistent"}, (server, endpoint)
    slots = int(read_dotenv()["APP_WORKERS"]) * int(read_dotenv()["APP_THREADS"])
    assert set(data["db_connections"]) == {"gunicorn-pg", "gunicorn-pgpool", "uwsgi-pg", "uwsgi-pgpool"}
    assert all(1 <= held <= slots for held in data["db_connections"].values()), data["db_connections"]
    databases_section = text[text.index("## 9. Databases") : text.index("## 10. Worker models")]
    assert "n/a" not in databases_section
    # Section 10: both models of both servers measured, and each held streams: gevent every one of the
    # tiny ramp's, with every event on time, threads at least its first step (fewer than its 8 threads).
    ramps = dict(data["settings"]["streams_ramps"])
    for server in ("gunicorn", "uwsgi"):
        gevent, threads = data["stream_capacity"][f"{server} gevent"], data["stream_capacity"][f"{server} threads"]
        assert gevent["capacity"] == ramps["gevent"][2], gevent
        assert threads["capacity"] >= ramps["threads"][0], threads
        assert gevent["cpu_cores"][gevent["services"]["app"]] > 0, gevent
    models_section = text[text.index("## 10. Worker models") : text.index("## 11. What monitoring costs")]
    assert "n/a" not in models_section
    # Section 11: each server with its metrics on and off, a ratio for each, the verdict written.
    metrics_section = text[text.index("## 11. What monitoring costs") : text.index("## Reproduce")]
    assert "n/a" not in metrics_section and "With its metrics on" in metrics_section
    # The run left nothing behind.
    left = subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=com.docker.compose.project=wsgi-stack-bench", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == ""
