"""`make bench` keeps going when one measurement fails: the /proc race, failed steps marked n/a, exit 3.

No Docker here: the /proc tests run the bench's reading script on this machine, and the whole-run
tests drive bench.main() against a stand-in for the containers that answers as wrk, probe.py, Locust
and /proc would, with one of them made to fail.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import bench  # loadtest/bench/bench.py
import bench_databases  # loadtest/bench/bench_databases.py
import bench_models  # loadtest/bench/bench_models.py
import bench_nginx_cost  # loadtest/bench/bench_nginx_cost.py
import psutil
import pytest
import report  # loadtest/bench/report.py
from harness import ROOT, wait_until


class LocalContainers:
    """Runs here what the bench would run in a container, failing as Containers.exec_full does."""

    def __init__(self) -> None:
        self.ids = {"app": "local"}

    def exec(self, service, *argv, timeout):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])}... in {service} exited {done.returncode}: {done.stderr}")
        return done.stdout


def stat_line(pid: int, comm: str, utime: int, stime: int, ppid: int = 1) -> str:
    # After "(comm)": state, ppid, then 9 fields, then utime and stime (the 12th and 13th), then more.
    return f"{pid} ({comm}) S {ppid} " + " ".join(["0"] * 9 + [str(utime), str(stime)] + ["0"] * 5) + "\n"


def test_reading_proc_skips_a_process_that_exits_between_the_glob_and_its_read(tmp_path):
    proc = tmp_path / "proc"
    for pid in (7, 8, 9):
        (proc / str(pid)).mkdir(parents=True)
    # Pid 7's stat is a FIFO: the reader blocks on it, after the glob has listed 8, until we write.
    fifo = proc / "7" / "stat"
    os.mkfifo(fifo)
    (proc / "8" / "stat").write_text(stat_line(8, "gunicorn", 5, 1))
    (proc / "9" / "stat").write_text(stat_line(9, "gunicorn: worker", 30, 4))
    result: dict[str, object] = {}

    def read() -> None:
        try:
            result["ticks"] = bench.Bench(bench.FULL, tmp_path, LocalContainers()).worker_ticks("app", str(proc))
        except Exception as exc:
            result["error"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            # Succeeds once the reader has the FIFO open, that is once it has globbed every pid.
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert time.monotonic() < deadline, "the reading script never opened the first stat file"
            time.sleep(0.01)
    # Pid 8 exits now: listed by the glob, gone by the time its stat is read.
    (proc / "8" / "stat").unlink()
    (proc / "8").rmdir()
    os.write(fd, stat_line(7, "gunicorn: worker", 10, 2).encode())
    os.close(fd)
    reader.join(20)
    assert "error" not in result, result.get("error")
    assert result["ticks"] == {"7": 12, "9": 34}


def test_reading_the_real_proc_never_fails_while_processes_come_and_go(tmp_path):
    # A worker that uses CPU, and processes starting and exiting all the time, as a health check's do.
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass"]
    )
    churn = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"])
    try:
        # The worker has used CPU before the first reading (the loop's children live too briefly to wait on).
        wait_until(lambda: sum(psutil.Process(worker.pid).cpu_times()[:2]) > 0, 10, "the worker to use CPU")
        b = bench.Bench(bench.FULL, tmp_path, LocalContainers())
        # Under this churn the old `cat /proc/[0-9]*/stat` failed about every other time.
        readings = [b.worker_ticks("app") for _ in range(60)]
    finally:
        for child in (worker, churn):
            child.kill()
            child.wait()
    assert all(str(worker.pid) in ticks for ticks in readings)
    assert readings[-1][str(worker.pid)] > readings[0][str(worker.pid)]
    assert all("1" not in ticks for ticks in readings)


def test_the_generator_note_keeps_each_reading_with_its_own_run():
    def run(cores: float, threads: int) -> dict:
        return {"generator_cores": cores, "generator_threads": threads}

    # The first run's CPU was not read. The second used 1.6 cores over 4 threads: 0.4 each, no limit.
    # Pairing the filtered readings with the unfiltered runs put 1.6 against the first run's 1 thread.
    assert report.generator_note([run(math.nan, 1), run(1.6, 4)]) == "1.60 (no)"
    assert report.generator_note([run(math.nan, 4), run(0.95, 1)]) == "0.95 (**yes**)"
    unread = [dict(run(math.nan, 1), missing={"CPU": "OSError: cgroup gone"})]
    assert report.generator_note(unread) == "n/a: OSError: cgroup gone"


# --- whole runs against a stand-in for the containers --------------------------------------
SERVICES = (
    "loadgen",
    "gunicorn",
    "uwsgi",
    "nginx-gunicorn",
    "nginx-uwsgi",
    "nginx-gunicorn-unix",
    "nginx-uwsgi-unix",
    "hello-gunicorn",
    "hello-uwsgi",
    "nginx-hello-gunicorn",
    "nginx-hello-uwsgi",
    "peer-nginx",
    "peer-gunicorn-defaults",
    "peer-gunicorn-template",
    "peer-uwsgi-defaults",
    "postgres",
    "gunicorn-pg",
    "gunicorn-pgpool",
    "uwsgi-pg",
    "uwsgi-pgpool",
    "gunicorn-gevent",
    "uwsgi-gevent",
    "nginx-gunicorn-gevent",
    "nginx-uwsgi-gevent",
    "gunicorn-nometrics",
    "uwsgi-nometrics",
)
TIMING = {"status": 200, "first_byte_ms": 1.5, "total_ms": 3.0, "arrivals_ms": [1.5, 3.0], "error": ""}


class FakeContainers:
    """Answers the bench's docker execs as the real tools would; `fail` picks the one exec that fails."""

    def __init__(self, fail) -> None:
        self.fail = fail
        self.ids = {s: f"{i:064x}" for i, s in enumerate(SERVICES)}
        self.counters = dict.fromkeys(SERVICES, Path("/dev/null"))
        self.env: dict[str, str] = {}
        self.ns = 0
        self.ticks = 0

    def focus(self, services):
        pass

    @contextlib.contextmanager
    def pinned(self, cpus):
        yield

    def refresh(self):
        pass

    def hostname(self, service):
        return self.ids[service][:12]

    def cpu_ns(self):
        self.ns += 500_000_000
        return dict.fromkeys(self.ids, self.ns)

    def exec(self, service, *argv, timeout):
        return self.exec_full(service, *argv, timeout=timeout).stdout

    def exec_full(self, service, *argv, timeout):
        if self.fail(self, service, argv):
            raise RuntimeError(f"{' '.join(argv[:3])}... in {service} exited 1: injected failure")
        return subprocess.CompletedProcess(argv, 0, self.answer(argv), "")

    def answer(self, argv) -> str:
        if argv[0] == "wrk":
            summary = {
                "requests": 1000,
                "duration_us": 1_000_000,
                "bytes": 100_000,
                "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
                "latency_us": {"p50": 2000, "p90": 3000, "p99": 5000, "max": 9000, "mean": 2100.0},
            }
            return "Running 1s test\nWRK_JSON " + json.dumps(summary) + "\n"
        if argv[:2] == ("python", "/srv/bench/probe.py"):
            mode, args = argv[2], list(argv[3:])
            if mode == "ttfb":
                return json.dumps({url: [TIMING] * 3 for url in args[: args.index("--requests")]})
            if mode == "concurrent":
                clients = int(args[args.index("--clients") + 1])
                return json.dumps({"wall_ms": 300.0, "streams": [TIMING] * clients, "probes": [TIMING] * 4})
            if mode == "handshakes":
                tls, session = args[args.index("--tls") + 1], args[args.index("--session") + 1]
                return json.dumps(
                    {
                        "address": "nginx-gunicorn:8443",
                        "path": "/nginx-health",
                        "tls": tls,
                        "session": session,
                        "clients": int(args[args.index("--clients") + 1]),
                        "seconds": 1.0,
                        "handshakes": 400,
                        "resumed": 400 if session == "reuse" else 0,
                        "group": "X25519MLKEM768" if tls == "1.3" else "X25519",
                        "cipher": "TLS_AES_256_GCM_SHA384",
                    }
                )
            return json.dumps({"ready": True, "attempts": 1, "last": "200"})
        if argv[:3] == ("sh", "-c", bench.PROC_STAT_SCRIPT):
            self.ticks += 10
            lines = [stat_line(1, "gunicorn", 1, 1), stat_line(7, "gunicorn", self.ticks, 1)]
            lines += [stat_line(8, "gunicorn", self.ticks // 2, 1), stat_line(99, "sh", 0, 0)]
            return "".join(lines)
        if argv[0] == "h2load":
            requests = int(argv[argv.index("-n") + 1])
            return (
                f"TLS Protocol: TLSv1.3\nApplication protocol: {'http/1.1' if '--h1' in argv else 'h2'}\n"
                f"finished in 500.00ms, {requests * 2}.00 req/s, 2.00MB/s\n"
                f"requests: {requests} total, {requests} started, {requests} done, {requests} succeeded, 0 failed, "
                "0 errored, 0 timeout\n"
                f"status codes: {requests} 2xx, 0 3xx, 0 4xx, 0 5xx\n"
                f"traffic: 1.00MB ({requests * 700}) total, 1.00KB ({requests * 100}) headers (space savings 40.00%), "
                f"1.00MB ({requests * 550}) data\n"
            )
        if argv[:3] == ("sh", "-c", bench_models.STREAMS_SCRIPT):
            step, most = int(argv[5]), int(argv[7])
            steps = [
                {"clients": n, "events": 9 * n, "max_lateness_ms": 5.0, "late": 0, "failed": 0, "probe_p99_ms": 4.0}
                for n in range(step, most + 1, step)
            ]
            streams = {"late_ms": 150.0, "probe_p99_ms": 50.0, "steps": [{**s, "kept": True} for s in steps]}
            generator = {"cpu_mean_percent": 20.0, "cpu_max_percent": 40.0, "valid": True}
            return json.dumps({"streams": {**streams, "capacity": most}, "generator": generator, "failure_reasons": {}})
        if argv[:3] == ("sh", "-c", bench_databases.CONNECTIONS_SCRIPT):
            return "8\n"
        if argv[:2] == ("sh", "-c") and "locust" in argv[2]:
            stats = [{"num_requests": 900, "num_failures": 0, "start_time": 10.0, "last_request_timestamp": 13.0}]
            return json.dumps(stats)
        if argv == ("cat", "/tmp/nginx/nginx.conf"):  # section 12: the template as render.sh fills it
            template = (ROOT / "nginx" / "nginx.conf.template").read_text()
            return template.replace("${NGINX_CONF_DIR}", "/etc/nginx/stack").replace("${APP_SERVER}", "gunicorn")
        if argv[0] == "cat" and argv[1].startswith("/etc/nginx/stack/"):
            return (ROOT / "nginx" / argv[1].removeprefix("/etc/nginx/stack/")).read_text()
        if argv[:2] == ("flock", "/tmp/nginx/config.lock"):  # section 12 loads a config
            return ""
        raise AssertionError(f"the bench ran something unexpected: {argv}")


def once(rule):
    """A failure rule that fires on its first match only: exactly one measurement fails."""
    fired = []

    def fail(stack, service, argv) -> bool:
        if not fired and rule(stack, service, argv):
            fired.append(argv)
            return True
        return False

    return fail


def run_bench(monkeypatch, tmp_path, fail, dotenv="APP_WORKERS=2\nAPP_THREADS=4\n"):
    """bench.main() with the tiny profile, the containers faked: (exit code, report text, raw data, stdout)."""
    repo = tmp_path / "repo"
    (repo / ".secrets").mkdir(parents=True)
    (repo / ".secrets" / "django_secret_key").write_text("x" * 50)
    (repo / ".env").write_text(dotenv)
    containers = FakeContainers(fail)

    def compose(*args, env=None, capture=False):
        containers.env = dict(env or {})
        return ""

    monkeypatch.setattr(bench, "REPO", repo)
    monkeypatch.setattr(bench, "bench_stack", lambda build: contextlib.nullcontext())
    # The certificate nginx mounts: the containers are stand-ins, so nothing needs one.
    monkeypatch.setattr(bench, "ensure_certificate", lambda: None)
    monkeypatch.setattr(bench, "Containers", lambda: containers)
    monkeypatch.setattr(bench, "compose", compose)
    monkeypatch.setattr(bench.Bench, "versions", lambda self: {"wrk": "fake"})
    monkeypatch.setattr(bench_nginx_cost, "SETTLE_S", 0)  # no nginx here to settle after a reload
    for name in ("APP_WORKERS", "APP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "results"
    code = bench.main(["--profile", "tiny", "--results-dir", str(out), "--no-build"])
    return code, (out / "report.md").read_text(), json.loads((out / "raw.json").read_text())


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end > 0 else None]


def test_a_complete_run_exits_0_with_every_figure_in_the_report(monkeypatch, tmp_path, capsys):
    code, text, data = run_bench(monkeypatch, tmp_path, fail=lambda stack, service, argv: False)
    assert code == 0
    assert data["missing"] == []
    assert "n/a" not in text and "Incomplete" not in text and "Not measured" not in text
    for chart in ("proxy_tax.png", "servers.png", "peers.png", "ceilings.png", "ttfb.png", "sweep.png"):
        assert f"]({chart})" in text
    assert "Incomplete" not in capsys.readouterr().out
    # Section 12: every change to the shipped template applied, and a row for it.
    for change in bench_nginx_cost.CHANGES:
        assert f"| {change} | 1 |" in text


def test_a_failed_reload_on_separate_cores_puts_the_shipped_config_back_and_goes_on(monkeypatch, tmp_path):
    loads: list[tuple[str, str]] = []

    def fail(stack, service, argv) -> bool:
        if argv[0] == "flock":  # a config loaded into an nginx: the first is gunicorn's, a worker per core
            loads.append((service, argv[6]))
            return len(loads) == 1
        return False

    code, text, data = run_bench(monkeypatch, tmp_path, fail=fail)
    assert code == bench.INCOMPLETE
    assert [(m["label"], m["what"]) for m in data["missing"]] == [("gunicorn, separate cores", "placement")]
    (first, changed), (then, back) = loads[:2]
    assert first == then == "nginx-gunicorn"
    workers = (os.cpu_count() or 1) - (os.cpu_count() or 1) // 2
    assert f"\nworker_processes {workers};\n" in changed
    assert "\nworker_processes ${NGINX_WORKER_PROCESSES};\n" in back  # the shipped config, as it was read
    # uWSGI's pairs still ran, and every section after them.
    assert "| uwsgi, separate cores | 1,000 (one run) |" in section(text, "## 1. Proxy tax")
    assert "## 12." in text


WRK_ERROR = "RuntimeError: wrk -t1 -c8... in loadgen exited 1: injected failure"
PROBE_ERROR = "RuntimeError: python /srv/bench/probe.py {}... in loadgen exited 1: injected failure"


@pytest.mark.parametrize(
    ("rule", "heading", "expected"),
    [
        pytest.param(
            lambda stack, service, argv: argv[0] == "wrk" and argv[-1].startswith("http://hello-gunicorn:8000"),
            "## 4. Ceilings",
            f"| gunicorn hello direct | n/a: {WRK_ERROR} |",
            id="wrk-run",
        ),
        pytest.param(
            lambda stack, service, argv: argv[:3] == ("sh", "-c", bench.PROC_STAT_SCRIPT) and service == "gunicorn",
            "## 1. Proxy tax",
            "| 1,000 (one run) | 1.000 (1.00) | 5.0 / 5.0 | n/a: RuntimeError: sh -c cat",
            id="proc-read-worker-share-cell",
        ),
        pytest.param(
            lambda stack, service, argv: argv[2:3] == ("ttfb",),
            "## 5. Streaming",
            "n/a: " + PROBE_ERROR.format("ttfb"),
            id="ttfb-probe",
        ),
        pytest.param(
            lambda stack, service, argv: argv[2:3] == ("concurrent",) and argv[3].startswith("http://peer-nginx:8083"),
            "## 3. The peers",
            "| peer: uWSGI defaults | n/a: " + PROBE_ERROR.format("concurrent") + " |",
            id="streams-probe",
        ),
        pytest.param(
            lambda stack, service, argv: argv[0] == "wrk" and argv[-1].startswith("http://peer-nginx:8082"),
            "## 3. The peers",
            f"| plaintext | peer: django template | n/a: {WRK_ERROR} |",
            id="peer-wrk-run",
        ),
        pytest.param(
            lambda stack, service, argv: argv[:2] == ("sh", "-c") and "locust" in argv[2],
            "## 7. The load generator",
            "**Cross-check with Locust.** n/a: RuntimeError: sh -c cd /tmp && locust",
            id="locust",
        ),
        pytest.param(
            lambda stack, service, argv: argv[2:3] == ("ready",) and stack.env.get("APP_WORKERS") == "1",
            "## 6. Workers x threads",
            "| 1 workers | n/a: " + PROBE_ERROR.format("ready") + " |",
            id="sweep-point",
        ),
        pytest.param(
            lambda stack, service, argv: argv[0] == "wrk" and argv[-1].startswith("https://nginx-uwsgi:8443"),
            "## 8. HTTPS",
            f"| uwsgi | 1,000 (one run) | n/a: {WRK_ERROR} | n/a: {WRK_ERROR} |",
            id="https-wrk-run",
        ),
        pytest.param(
            lambda stack, service, argv: argv[2:3] == ("handshakes",) and "reuse" in argv,
            "## 8. HTTPS",
            "| TLS 1.3 resumed | n/a: " + PROBE_ERROR.format("handshakes") + " |",
            id="https-handshakes-probe",
        ),
        pytest.param(
            lambda stack, service, argv: argv[0] == "h2load" and "--h1" in argv,
            "## 8. HTTPS",
            "| HTTP/1.1 | - | n/a: RuntimeError: h2load -n 1440... in loadgen exited 1: injected failure |",
            id="https-page-h2load",
        ),
        pytest.param(
            lambda stack, service, argv: (
                argv[:3] == ("sh", "-c", bench_models.STREAMS_SCRIPT)
                and argv[4].startswith("http://nginx-uwsgi-gevent")
            ),
            "## 10. Worker models",
            "| uwsgi | gevent | n/a: RuntimeError: sh -c out=$(mktemp -d)",
            id="models-streams-capacity",
        ),
        pytest.param(
            lambda stack, service, argv: argv[0] == "wrk" and argv[-1].startswith("http://uwsgi-nometrics:8001"),
            "## 11. What monitoring costs",
            f"| uwsgi | 1,000 (one run) | n/a: {WRK_ERROR} | n/a |",
            id="metrics-off-wrk-run",
        ),
    ],
)
def test_a_failed_measurement_is_marked_na_and_the_run_exits_incomplete(
    monkeypatch, tmp_path, capsys, rule, heading, expected
):
    code, text, data = run_bench(monkeypatch, tmp_path, fail=once(rule))
    assert code == bench.INCOMPLETE == 3
    # The report is written from everything else, every section in it; the failed cell says why.
    for title in (
        "## 1.",
        "## 2.",
        "## 3.",
        "## 4.",
        "## 5.",
        "## 6.",
        "## 7.",
        "## 8.",
        "## 9.",
        "## 10.",
        "## 11.",
        "## Reproduce",
    ):
        assert title in text
    assert expected in section(text, heading)
    assert "**Incomplete run.** 1 measurement step(s) failed" in text
    [missing] = data["missing"]
    assert "injected failure" in missing["reason"]
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("Incomplete run: 1 measurement(s) missing") and "injected failure" in last


def test_the_proc_read_failing_keeps_the_run_and_says_which_reading_is_missing(monkeypatch, tmp_path):
    # The failure: the /proc read in a ceilings run exited 1, and the whole run was lost.
    rule = once(
        lambda stack, service, argv: service == "hello-gunicorn" and argv[:3] == ("sh", "-c", bench.PROC_STAT_SCRIPT)
    )
    code, text, data = run_bench(monkeypatch, tmp_path, fail=rule)
    assert code == bench.INCOMPLETE
    [kept] = [r for r in data["runs"] if r["label"] == "gunicorn hello direct"]
    assert kept["rps"] == 1000 and math.isnan(kept["busiest_worker_share"])
    assert "injected failure" in kept["missing"]["worker CPU"]
    ceilings = section(text, "## 4. Ceilings")
    assert "| gunicorn hello direct | 1,000 (one run) |" in ceilings
    assert (
        "**Not measured** (n/a above): ceilings `gunicorn hello direct` r1, worker CPU: RuntimeError: sh -c" in ceilings
    )


def test_a_section_that_stops_early_is_marked_na_and_the_others_are_reported(monkeypatch, tmp_path, capsys):
    code, text, data = run_bench(monkeypatch, tmp_path, fail=lambda *_: False, dotenv="APP_WORKERS=2\n")
    assert code == bench.INCOMPLETE
    assert data["missing"] == [
        {
            "section": "sweep",
            "label": "",
            "round": None,
            "what": "section",
            "reason": "KeyError: 'APP_THREADS is not in .env'",
        }
    ]
    assert "n/a: KeyError: 'APP_THREADS is not in .env'" in section(text, "## 6. Workers x threads")
    assert "| nginx return 200 | 1,000 (one run) |" in section(text, "## 4. Ceilings")
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("Incomplete run: 1 measurement(s) missing")


@pytest.mark.parametrize(
    ("lines", "workers"),
    [
        # gunicorn: the master is pid 1, its workers its children, and so is the metrics exporter.
        (
            [(1, "gunicorn", 5, 0, 0), (7, "gunicorn", 100, 1, 1), (8, "gunicorn", 50, 1, 1),
             (9, "stack-exporter", 30, 1, 1)],
            {"7": 101, "8": 51},
        ),
        # uWSGI: supervise.py is pid 1, the master its child, the workers the master's children.
        (
            [(1, "python", 5, 0, 0), (6, "stack uWSGI mas", 3, 0, 1), (9, "stack uWSGI wor", 100, 1, 6),
             (10, "stack uWSGI wor", 40, 1, 6), (30, "python", 9, 0, 0)],
            {"9": 101, "10": 41},
        ),
    ],
)  # fmt: skip
def test_worker_cpu_counts_the_workers_only(lines, workers):
    # Each container also shows the reading sh and its cat, started by `docker exec` (ppid 0).
    text = "".join(stat_line(*line) for line in [*lines, (20, "sh", 1, 0, 0), (21, "cat", 1, 0, 20)])
    assert bench.parse_proc_stat(text) == workers
