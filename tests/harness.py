"""Run the stack as local processes on loopback: real nginx in front of real gunicorn or uWSGI.

The processes use the very config files the containers use (nginx/render.sh and its
templates, gunicorn/gunicorn.conf.py, uwsgi/uwsgi.ini) and the shared values in .env;
only addresses and paths differ, and they are passed as environment variables.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest.mock
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import local_tls
import psutil
from compose_project import free_port
from dotenv_file import read_dotenv  # the .env reader of the Makefile too; tests import it from here
from stack.healthcheck import status_of
from stack.server_env import TRANSPORTS, listen_addresses  # noqa: F401  (TRANSPORTS: the drills run over each)
from stack.server_env import WORKER_MODELS as MODELS  # noqa: F401  (the drills run under each)
from swap import answering_server, record_event

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "app"
VENV_BIN = Path(sys.executable).parent
SERVERS = ("gunicorn", "uwsgi")
HOST = "localhost"


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")


TCP_ESTABLISHED, TCP_LISTEN = "01", "0A"


def handed_over(table: str, nginx_port: int, upstream_port: int, count: int, upstream: int | None = None) -> bool:
    """Whether `count` requests are in the app server's hands, judged from a kernel TCP table
    (/proc/net/tcp) that holds nginx's sockets: nginx has accepted and read every connection made
    to it (none waits in its accept queue or holds unread bytes), and holds at least `count`
    connections to the app server, running there or waiting in its listen queue. (With gunicorn
    these include nginx's idle keep-alive connections; the nginx side of the check has none.)
    Over Unix sockets those connections are not in the table: `upstream` gives their number."""
    clients, queued, tcp_upstream = [], 0, 0
    for line in table.splitlines()[1:]:
        _, local, remote, state, queues, *_ = line.split()
        unread = int(queues.partition(":")[2], 16)  # a listening socket's: its accept queue
        if int(local.rpartition(":")[2], 16) == nginx_port:
            if state == TCP_LISTEN:
                queued += unread
            elif state == TCP_ESTABLISHED:
                clients.append(unread)
        elif int(remote.rpartition(":")[2], 16) == upstream_port and state == TCP_ESTABLISHED:
            tcp_upstream += 1
    upstream = tcp_upstream if upstream is None else upstream
    return len(clients) >= count and not any(clients) and not queued and upstream >= count


def unix_connections(table: str, directory: str) -> int:
    """Connections to the listening Unix sockets under `directory`, accepted or still in the listen
    queue, from the /proc/net/unix of the connecting side's network namespace (the kernel makes the
    listener's end of a connection in the connecting socket's namespace): each is an entry named
    like the socket it reached, in state SS_CONNECTED (03) or, not accepted yet, SS_CONNECTING (02)."""
    connections = 0
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[7].startswith(directory.rstrip("/") + "/") and fields[5] in ("02", "03"):
            connections += 1
    return connections


def app_address(env: dict[str, str]) -> str:
    """Where a local app server started with `env` listens, as stack.server_env names it: APP_BIND
    (APP_TRANSPORT=tcp), or its socket file (unix), gunicorn's first worker's."""
    with unittest.mock.patch.dict(os.environ, env, clear=True):
        return listen_addresses(env["APP_SERVER"])[0]


def burst(fetch: Callable[[], int], count: int) -> list[Future[int]]:
    """`count` calls of fetch (a request giving back its status) at once, each on its own thread."""
    pool = ThreadPoolExecutor(count)
    futures = [pool.submit(fetch) for _ in range(count)]
    pool.shutdown(wait=False)
    return futures


def app_workers(master: psutil.Process) -> list[psutil.Process]:
    """The app server's workers: its master's children but the metrics exporter (app/stack/exporter.py)."""
    workers = []
    for child in master.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if "stack.exporter" not in " ".join(child.cmdline()):
                workers.append(child)
    return workers


def stop_process(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal the process we started (by its own PID), then kill it if it outstays the timeout."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def server_command(server: str) -> list[str]:
    """The container's own entrypoint: it prepares the database and execs the server."""
    return [str(ROOT / server / "entrypoint.sh")]


@dataclass
class LocalStack:
    """nginx on one loopback port, the app server on another, files in a private directory."""

    server: str
    workdir: Path
    env: dict[str, str]
    nginx_port: int
    app_port: int
    https_port: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # The log files' contents when stop() removed the directory: read_log serves them from here.
    kept_logs: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def app_log(self) -> Path:
        return self.workdir / "app.log"

    @property
    def nginx_log(self) -> Path:
        return self.workdir / "nginx-error.log"

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=APP_DIR,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    @property
    def app_address(self) -> str:
        return app_address(self.env)

    def app_answers(self) -> bool:
        if self.processes["app"].poll() is not None:
            raise RuntimeError(f"app exited with {self.processes['app'].returncode}\n{self.describe_failure()}")
        try:
            return status_of("http" if self.server == "gunicorn" else "uwsgi", self.app_address) == 200
        except (OSError, ValueError, IndexError):
            return False

    def start(self) -> LocalStack:
        # The images run collectstatic at build time; here it runs once per stack.
        self.manage("collectstatic", "--noinput")
        with self.app_log.open("ab") as log:
            self.processes["app"] = subprocess.Popen(
                server_command(self.server),
                cwd=APP_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if self.env["APP_TRANSPORT"] == "unix":
            # nginx builds its upstream from the sockets that answer (as compose starts it after the
            # app is healthy): none yet, and it refuses to start.
            wait_until(self.app_answers, 30, f"{self.server} to answer on {self.app_address}")
        with self.nginx_log.open("ab") as log:
            self.processes["nginx"] = subprocess.Popen(
                [str(ROOT / "nginx" / "entrypoint.sh")],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self.ready, 30, f"{self.server} behind nginx to answer /readyz")
        except TimeoutError:
            self.stop()
            raise RuntimeError(self.describe_failure()) from None
        return self

    def ready(self) -> bool:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}\n{self.describe_failure()}")
        # Through the HTTPS port, which answers whether or not plain HTTP redirects.
        request = urllib.request.Request(self.https_url + "/readyz", headers={"Host": HOST})
        context = ssl.create_default_context(cafile=tls_files() / "ca" / "ca.pem")
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def read_log(self, path: Path) -> str:
        """A log file of this stack, also after stop() has removed the directory."""
        if path.exists():
            return path.read_text(errors="replace")
        return self.kept_logs.get(path.name, "")

    def describe_failure(self) -> str:
        logs = [
            f"--- {path.name}\n{self.read_log(path)[-4000:]}"
            for path in (self.app_log, self.nginx_log)
            if path.exists() or path.name in self.kept_logs
        ]
        return "\n".join(logs)

    def wait_until_handed_over(self, count: int, timeout: float = 30) -> None:
        """Wait until `count` requests sent to nginx are in the app server's hands (handed_over)."""

        def done() -> bool:
            upstream = None
            if self.env["APP_TRANSPORT"] == "unix":
                upstream = unix_connections(Path("/proc/net/unix").read_text(), self.env["APP_SOCKET_DIR"])
            return handed_over(Path("/proc/net/tcp").read_text(), self.nginx_port, self.app_port, count, upstream)

        wait_until(done, timeout, f"{count} requests to reach {self.server} through nginx")

    def app_refuses(self) -> bool:
        """Whether every address the app server listens on refuses a new connection (over Unix
        sockets, its files are gone or nothing listens on them)."""
        with unittest.mock.patch.dict(os.environ, self.env, clear=True):
            addresses = listen_addresses(self.server)
        for address in addresses:
            family, target = (
                (socket.AF_UNIX, address) if address.startswith("/") else (socket.AF_INET, ("127.0.0.1", self.app_port))
            )
            with socket.socket(family) as probe:
                probe.settimeout(1)
                try:
                    probe.connect(target)
                except (ConnectionRefusedError, FileNotFoundError):
                    continue
                except OSError:
                    pass
                return False
        return True

    def app_pid(self) -> int:
        """The app server's master: the process started here, except that uWSGI's entrypoint
        runs it under uwsgi/supervise.py, whose one child it is."""
        started = psutil.Process(self.processes["app"].pid)
        if self.server != "uwsgi":
            return started.pid
        wait_until(lambda: bool(started.children()), 10, "supervise.py to start the uWSGI master")
        return started.children()[0].pid

    def answering_server(self) -> str | None:
        return answering_server(str(self.https_port))

    def swap(self, target: str, events: Path | None = None) -> None:
        """What `make swap` does, for local processes: start the target on a new port, wait until
        it answers /readyz, re-render nginx for it and reload, then drain the old server (TERM)."""
        if target == self.server:
            return
        record_event("start", target, events)
        port = free_port()
        address = f"127.0.0.1:{port}"
        socket_dir = f"{self.env['APP_SOCKET_ROOT']}/{target}"
        env = {
            **self.env,
            "APP_SERVER": target,
            "APP_BIND": address,
            "APP_SERVER_ADDR": address,
            "APP_SOCKET_DIR": socket_dir,
        }
        with (self.workdir / f"app-{target}-{port}.log").open("ab") as log:
            new = subprocess.Popen(server_command(target), cwd=APP_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        protocol = "http" if target == "gunicorn" else "uwsgi"
        where = app_address(env)

        def target_ready() -> bool:
            if new.poll() is not None:
                raise RuntimeError(f"{target} exited with {new.returncode} before it was ready")
            try:
                return status_of(protocol, where) == 200
            except (OSError, ValueError, IndexError):
                return False

        wait_until(target_ready, 60, f"{target} to answer /readyz on {where}")
        record_event("cutover", target, events)
        subprocess.run([str(ROOT / "nginx" / "reload.sh")], env=env, check=True, capture_output=True, timeout=60)
        wait_until(lambda: self.answering_server() == target, 30, f"nginx to answer from {target}")
        old = self.processes["app"]
        stop_process(old, signal.SIGTERM, 60)
        self.server, self.env, self.app_port, self.processes["app"] = target, env, port, new
        record_event("done", target, events)

    def stop(self) -> None:
        # QUIT is nginx's graceful stop; TERM is the app servers' graceful one (uwsgi.ini makes it so).
        if "nginx" in self.processes:
            stop_process(self.processes["nginx"], signal.SIGQUIT, 15)
        if "app" in self.processes:
            stop_process(self.processes["app"], signal.SIGTERM, 40)
        # The processes are gone: remove the directory, keeping the logs readable (read_log).
        if self.workdir.exists():
            self.kept_logs = {path.name: path.read_text(errors="replace") for path in self.workdir.glob("*.log")}
            shutil.rmtree(self.workdir, ignore_errors=True)


# Every stack's directory, for the stacks that are built only for their env or never stopped:
# what stop() has not removed goes when the test run ends.
WORKDIRS: list[Path] = []


@atexit.register
def remove_workdirs() -> None:
    for workdir in WORKDIRS:
        shutil.rmtree(workdir, ignore_errors=True)


_TLS_DIR: list[Path] = []


def tls_files() -> Path:
    """A local CA and a certificate for localhost and 127.0.0.1 (scripts/local_tls.py, as `make up`
    makes them), one per test run: the directory holding ca/ca.pem and tls/{cert,key}.pem."""
    if not _TLS_DIR:
        secrets_dir = Path(tempfile.mkdtemp(prefix="stack-tls-"))
        secrets_dir.chmod(0o755)
        WORKDIRS.append(secrets_dir)
        if local_tls.main(["--secrets", str(secrets_dir), "--hosts", "localhost,127.0.0.1"]) != 0:
            raise RuntimeError("scripts/local_tls.py failed")
        _TLS_DIR.append(secrets_dir)
    return _TLS_DIR[0]


def local_stack(server: str, **overrides: str) -> LocalStack:
    """Build (not start) a stack for `server`; overrides replace .env values, as a shell would."""
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    workdir = Path(tempfile.mkdtemp(prefix=f"stack-{server}-"))
    WORKDIRS.append(workdir)
    # nginx's workers run as an unprivileged user when the tests run as root: let them read.
    workdir.chmod(0o755)
    nginx_port, app_port, https_port = free_port(), free_port(), free_port()
    tls = tls_files()
    (workdir / "acme").mkdir()
    env = {
        **os.environ,
        **read_dotenv(),
        "APP_SERVER": server,
        # TCP on loopback unless a test asks for the shipped unix sockets: most tests read the app's
        # port (handed_over's TCP table, status_of); the compose tests run .env's transport.
        "APP_TRANSPORT": "tcp",
        "APP_SOCKET_ROOT": str(workdir / "sockets"),
        "APP_SOCKET_DIR": str(workdir / "sockets" / server),
        "APP_BIND": f"127.0.0.1:{app_port}",
        "APP_SERVER_ADDR": f"127.0.0.1:{app_port}",
        "NGINX_LISTEN": f"127.0.0.1:{nginx_port}",
        "NGINX_TLS_LISTEN": f"127.0.0.1:{https_port}",
        "NGINX_STATUS_LISTEN": f"127.0.0.1:{free_port()}",
        # The app's metrics on, as shipped, each stack's exporter on a port of its own.
        "METRICS_BIND": f"127.0.0.1:{free_port()}",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        "HTTP_PORT": str(nginx_port),
        "HTTPS_PORT": str(https_port),
        # Most tests look at the app over plain HTTP, as behind a TLS terminator; the HTTPS tests
        # (tests/test_tls.py) turn the shipped redirect back on.
        "HTTPS_REDIRECT": "0",
        "TLS_CERT_FILE": str(tls / "tls" / "cert.pem"),
        "TLS_KEY_FILE": str(tls / "tls" / "key.pem"),
        "ACME_ROOT": str(workdir / "acme"),
        "NGINX_RUN_DIR": str(workdir / "nginx"),
        "NGINX_ACCESS_LOG": str(workdir / "nginx-access.log"),
        "STATIC_ROOT": str(workdir / "static"),
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ENV": "production",
        # The entrypoints call python, gunicorn and uwsgi by name, as in the images.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        **overrides,
    }
    return LocalStack(
        server=server, workdir=workdir, env=env, nginx_port=nginx_port, app_port=app_port, https_port=https_port
    )


@contextmanager
def buffering_nginx(stack: LocalStack) -> Iterator[LocalStack]:
    """A second nginx in front of the same app server, rendered from the same files, that
    buffers streams: it ignores X-Accel-Buffering, and talks HTTP/1.0 to gunicorn.

    Buffering alone does not hold a stream back: nginx flushes each HTTP/1.1 chunk it parses
    from gunicorn. What does is buffering of an unframed body (the uwsgi protocol, or HTTP/1.0)
    when the client asks for gzip. Tests use this to show that their stream checks can fail.
    """
    pass_file = ROOT / "nginx" / f"pass-{stack.server}.conf"
    prefix = "proxy" if stack.server == "gunicorn" else "uwsgi"
    directives = pass_file.read_text().replace("proxy_http_version 1.1;", "proxy_http_version 1.0;")
    buffering_pass = stack.workdir / f"buffering-pass-{stack.server}.conf"
    buffering_pass.write_text(f"{directives}\n{prefix}_ignore_headers X-Accel-Buffering;\n")
    port, https_port = free_port(), free_port()
    env = {
        **stack.env,
        "NGINX_LISTEN": f"127.0.0.1:{port}",
        "NGINX_TLS_LISTEN": f"127.0.0.1:{https_port}",
        "NGINX_STATUS_LISTEN": f"127.0.0.1:{free_port()}",
        "NGINX_RUN_DIR": str(stack.workdir / "buffering"),
    }
    rendered = subprocess.run(
        [str(ROOT / "nginx" / "render.sh")], env=env, check=True, capture_output=True, text=True, timeout=30
    )
    conf = Path(rendered.stdout.strip())
    text = conf.read_text()
    if str(pass_file) not in text:
        raise RuntimeError(f"{conf} does not include {pass_file}")
    conf.write_text(text.replace(str(pass_file), str(buffering_pass)))
    nginx = subprocess.Popen(["nginx", "-e", "stderr", "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), 10, "the buffering nginx")
        yield LocalStack(stack.server, stack.workdir, env, port, stack.app_port, https_port)
    finally:
        stop_process(nginx, signal.SIGQUIT, 15)
