"""gunicorn settings for the Django app behind nginx (gunicorn 27).

Settings shared with uWSGI come from stack.server_env (values in the top-level .env);
the gunicorn-only ones below read the environment with the default stated beside them.
The app sits at ../app from this file, in the repository and in the image alike.
"""

import contextlib
import itertools
import os
import socket
import sys
import time
from pathlib import Path

from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, ThreadWorker

from gunicorn import glogging
from gunicorn import sock as gunicorn_sock

app_dir = Path(__file__).resolve().parent.parent / "app"
sys.path.insert(0, str(app_dir))

from stack import exporter, metrics  # noqa: E402  (needs app_dir on sys.path first)
from stack.server_env import listen_addresses, load  # noqa: E402

shared = load()

wsgi_app = "stack.wsgi:application"
chdir = str(app_dir)
# host:port over TCP (APP_TRANSPORT, .env). Over Unix sockets, a socket file per worker in the
# directory nginx shares, each a server of its own in nginx's upstream: workers sharing one socket
# split moderate load lopsidedly behind nginx's keep-alive pool, because a gthread worker accepts
# every connection it can and nginx reuses its most recently used idle connection: at a steady
# rate the busiest of two workers took up to 0.87 of `/plaintext` and 0.97 of `/queries?n=20`.
# With a socket each, nginx's least_conn picks the worker for every request, then one of its pooled
# connections: 0.51 and 0.50 (docs/bench/report.md, the comparison at its top, and section 3).
# The master binds them all and keeps them open; a new worker takes the free slot (pre_fork,
# post_fork below). gunicorn's umask (0) leaves the sockets writable by nginx's user.
addresses = listen_addresses("gunicorn")
worker_sockets = [address for address in addresses if address.startswith("/")]
bind = [f"unix:{address}" if address.startswith("/") else address for address in addresses]
# Connections nginx has opened but gunicorn has not accepted yet: room for a burst. The same
# as uWSGI's listen (uwsgi/uwsgi.ini); gunicorn's own default is 2048.
backlog = 1024


def accepts(path: str) -> bool:
    """Whether a connection to this Unix socket is accepted (it lands in its queue; the worker
    that takes it sees it closed, no request)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def refuse_new_connections(worker) -> bool:  # noqa: ANN001  (a gunicorn worker)
    """A worker with a socket of its own that starts to stop (SIGTERM, MAX_REQUESTS, the watchdog):
    new connections to it are refused at once, and nginx sends their requests to another worker,
    instead of leaving them queued until the drain and the next worker's start are over (up to
    GRACEFUL_TIMEOUT with a stream open). What is queued already can still be accepted. Shutting
    down the reading side is what refuses (the kernel's unix_stream_connect checks it); it acts on
    the socket itself, the master's copy too, so pre_fork gives the next worker a fresh one.
    Not while no other worker's socket accepts (the others restarting too, or the master stopping
    and their files gone): nginx would have nowhere to go and answer 503 (the restart drill, both
    workers restarting within a second). Then its requests wait in its queue, for this worker's
    drain (below) or the next worker. Whether it refused."""
    own = getattr(worker, "own_path", None)
    if own is None or not any(accepts(path) for path in worker_sockets if path != own):
        return False
    for listener in worker.sockets:
        # Its own socket only: on a socket every worker shares (the bench's TCP port) the shutdown
        # would stop the others accepting too.
        if listener.getsockname() == own:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RD)
    return True


# gthread: a thread per request, keep-alive to nginx, and a stream holds one thread, not a
# whole worker. The sync worker does no keep-alive and blocks a process per stream.
# On SIGTERM a gthread worker stops accepting but keeps its copy of the listening socket open
# until its drain ends, so a connection nginx makes meanwhile waits in the kernel's queue and is
# reset at the exit, too late for nginx to retry it elsewhere (a 503 in a scale-down). This one
# stops new connections when the drain starts. Over TCP, where the workers share the socket, it
# closes its copy: new connections are refused at once once every worker has (a stop), and nginx
# sends them to another replica (or answers 503 at once). Over Unix sockets it refuses them on its
# own socket (refuse_new_connections), accepts what is queued, so as not to reset it, and closes.
# Where it may not refuse, it goes on accepting, answering with Connection: close, for as long as
# gthread's drain lingers for idle connections (2 s, STOP_KEEPALIVE_LINGER): without that, a
# request waited 2.35 s for the next worker in the restart drill (0.34 s with it).
#
# It also counts, for the metrics, connections waiting for a thread: gthread accepts at once and
# queues them in the worker, where no listen backlog shows them.
class ThreadWorkerRefusingWhenStopping(ThreadWorker):
    own_path: str | None = None  # its socket's, set by post_fork below
    stopped_accepting = False
    accept_until: float | None = None

    def enqueue_req(self, conn) -> None:  # noqa: ANN001  (gunicorn's signature)
        metrics.connection_queued(+1)
        super().enqueue_req(conn)

    def handle(self, conn):  # noqa: ANN001, ANN201  (gunicorn's signature)
        metrics.connection_queued(-1)
        return super().handle(conn)

    def set_accept_enabled(self, enabled: bool) -> None:
        stopping = not enabled and not self.alive and not self.stopped_accepting  # not merely at capacity
        if stopping and self.own_path and self.accept_until is None and not refuse_new_connections(self):
            self.accept_until = time.monotonic() + STOP_KEEPALIVE_LINGER  # murder_pending ends it
            return
        super().set_accept_enabled(enabled)
        if not stopping:
            return
        self.stopped_accepting = True
        for listener in self.sockets:
            if self.own_path and listener.getsockname() == self.own_path:
                for _ in range(backlog):  # accept() passes over EAGAIN: an empty queue
                    accepted = self.nr_conns
                    self.accept(listener)
                    if self.nr_conns == accepted:
                        break
            listener.close()

    def murder_pending(self) -> None:
        """Called in every turn of the drain's loop, at least once a second."""
        super().murder_pending()
        if self.accept_until is not None and not self.stopped_accepting and time.monotonic() >= self.accept_until:
            self.set_accept_enabled(False)


# Processes: one per core. cpu_count() inside a container sees the host, so it is set, not guessed.
workers = shared.workers
if shared.worker_model == "gevent":
    import select

    import gevent
    from gevent import GreenletExit, monkey
    from gunicorn.workers.base_async import AsyncWorker
    from gunicorn.workers.ggevent import GeventWorker

    # A greenlet per connection: an open stream costs a socket and a little memory, not a thread.
    # gunicorn patches the standard library (gevent.monkey.patch_all) in each worker before it
    # imports the app, so Django, psycopg and time.sleep yield to other greenlets. When stopping,
    # the worker closes its listening socket at once (gevent's StreamServer.close), as the gthread
    # class below does. But it then waits until every connection it holds has closed, and nginx's
    # kept-alive upstream connections stay open between requests: measured here, a stop with 100
    # requests in flight took the whole GRACEFUL_TIMEOUT (30.2 s), though every answer was sent in 2.
    # This one ends them once the stop begins, so the stop ends with the last answer. A stop begins
    # with SIGTERM, or when the worker has served MAX_REQUESTS: measured with both workers recycled a
    # second apart, each kept nginx's idle connections until the graceful timeout, no worker
    # accepted, and a request waited 30.6 s (3 runs in 4). But a connection nginx is using is idle
    # only for the moment between two requests, and closing it then races nginx's next request (a
    # broken connection: its client got a 503, about once in five recycles under steady load). So
    # a stopping worker answers every request with Connection: close (gunicorn does), and closes a
    # connection only once it has waited IDLE_BEFORE_CLOSE_S for a request that did not come.
    class GeventWorkerClosingIdle(GeventWorker):
        def init_process(self) -> None:
            # Each connection waiting for a request, and since when.
            self.idle_since: dict = {}
            self.closing = False
            super().init_process()

        def handle(self, listener, client, addr) -> None:  # noqa: ANN001  (gunicorn's signature)
            self.idle_since[client] = time.monotonic()
            try:
                super().handle(listener, client, addr)
            finally:
                self.idle_since.pop(client, None)

        def handle_request(self, listener_name, req, sock, addr) -> None:  # noqa: ANN001  (gunicorn's)
            self.idle_since.pop(sock, None)
            try:
                # GeventWorker's own handle_request is this call inside the same except.
                AsyncWorker.handle_request(self, listener_name, req, sock, addr)
            except (GreenletExit, SystemExit):
                # Killed: at the graceful timeout (GreenletExit), or by the master's abort when the
                # heartbeat stopped (SystemExit, raised in whichever greenlet was running: the one
                # that never yielded). gunicorn's worker goes on reading this connection for another
                # request, and the kill that ends the drain is answered with a 500 for the request
                # it abandoned (measured: 2 of 6 runs under CPU load, 8.2 s). Closing it instead
                # gives nginx a broken connection: its own 502/503, or another worker's answer.
                raise StopIteration from None
            except StopIteration:
                # Answered with Connection: close, which ends this connection. When the worker is
                # stopping (MAX_REQUESTS was reached with this request), its idle ones end too.
                if not self.alive:
                    self.start_closing_idle()
                raise
            # Answered with keep-alive; should the stop have begun meanwhile, closed once idle.
            self.idle_since[sock] = time.monotonic()
            if not self.alive:
                self.start_closing_idle()

        def handle_exit(self, sig, frame) -> None:  # noqa: ANN001  (gunicorn's signature)
            super().handle_exit(sig, frame)
            self.start_closing_idle()

        def start_closing_idle(self) -> None:
            if not self.closing:
                self.closing = True
                # gevent's server goes on accepting what is queued until the worker's loop closes it.
                refuse_new_connections(self)
                gevent.spawn(self.close_idle)

        def close_idle(self) -> None:
            """Until the process exits (at the latest, at the graceful timeout)."""
            while True:
                now = time.monotonic()
                for client, since in list(self.idle_since.items()):
                    if now - since >= IDLE_BEFORE_CLOSE_S and not request_waiting(client):
                        close_connection(client)
                gevent.sleep(IDLE_BEFORE_CLOSE_S / 4)

    # Under steady load nginx reuses a kept-alive connection within milliseconds; one idle this long
    # is at the bottom of its pool.
    IDLE_BEFORE_CLOSE_S = 0.25

    def request_waiting(sock) -> bool:  # noqa: ANN001  (a gevent socket)
        """Bytes (or the peer's close) are ready to read: the OS's own poll, which never yields."""
        poller = monkey.get_original("select", "poll")()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def close_connection(sock) -> None:  # noqa: ANN001  (a gevent socket)
        """End the connection: the greenlet waiting on it for another request sees it closed."""
        with contextlib.suppress(OSError):  # already closed by the other end
            sock.shutdown(socket.SHUT_RDWR)

    worker_class = GeventWorkerClosingIdle
    # Connections served at once per worker, idle kept-alive ones from nginx included.
    worker_connections = shared.greenlets
else:
    worker_class = ThreadWorkerRefusingWhenStopping
    # Threads per process: Django releases the GIL on I/O (database, sleeps, socket writes).
    threads = shared.threads

# With gthread and gevent this is a liveness heartbeat, not a per-request limit (under gevent a
# greenlet that never yields stops the heartbeat, so the worker is killed after this long); the
# per-request budget is app/stack/watchdog.py's, and nginx's read timeout is REQUEST_TIMEOUT + 5 s.
timeout = shared.request_timeout
# SIGTERM lets in-flight requests finish for this long before workers are killed.
graceful_timeout = shared.graceful_timeout
# Idle keep-alive from nginx must outlive nginx's upstream keepalive_timeout (60 s, in the
# upstream block of nginx/nginx.conf.template), so nginx always closes first and never reuses a
# dead socket (502).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))

# Recycle workers to bound slow leaks; jitter staggers restarts so the pool never empties at once.
max_requests = shared.max_requests
max_requests_jitter = shared.max_requests_jitter

# The heartbeat file is touched every second; /dev/shm is RAM, a container's /tmp may be disk.
worker_tmp_dir = "/dev/shm"
# Only these peers may set wsgi.url_scheme via X-Forwarded-Proto. nginx overwrites that header;
# in compose nginx is the only container on the app network, so the stack sets "*" there.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# The control socket (new in 25.1) wants a writable $HOME; the root filesystem is read-only.
control_socket_disable = True

# Header limits match nginx's large_client_header_buffers (4 x 8k): nginx rejects first.
limit_request_line = 8190
limit_request_field_size = 8190


# nginx's JSON access log has every request. Here only the ones that went wrong (4xx, 5xx) get a
# key=value line, as uWSGI's log-4xx/log-5xx: a line per request through Docker's log pipe costs
# throughput (the figure is beside uWSGI's disable-logging in uwsgi/uwsgi.ini; docs/performance.md,
# "What the numbers changed"). The same fields as uWSGI's: nginx's request id and the time in
# microseconds. Not JSON, because gunicorn does not escape values.
class ErrorsOnlyAccessLogger(glogging.Logger):
    def access(self, resp, req, environ, request_time) -> None:  # noqa: ANN001  (gunicorn's signature)
        if resp.status_code is not None and resp.status_code >= 400:
            super().access(resp, req, environ, request_time)


logger_class = ErrorsOnlyAccessLogger
accesslog = "-"
access_log_format = (
    "server=gunicorn request_id=%({x-request-id}i)s client=%({x-forwarded-for}i)s status=%(s)s "
    "duration_us=%(D)s bytes=%(B)s method=%(m)s path=%(U)s query=%(q)s"
)
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")


def when_ready(server) -> None:  # noqa: ANN001  (gunicorn's hook signature)
    """METRICS_BIND set: the master starts the metrics exporter (app/stack/exporter.py), its child."""
    if shared.metrics_bind:
        exporter.start("gunicorn")


def pre_fork(server, worker) -> None:  # noqa: ANN001  (gunicorn's hook signature)
    """In the master: the new worker takes the lowest slot no live worker holds, and that slot's
    socket. One its last worker refused (refuse_new_connections) is made again at the same path;
    one that still accepts (its worker was killed) is kept, with the connections waiting in it."""
    taken = {getattr(sibling, "slot", None) for sibling in server.WORKERS.values()}
    worker.slot = next(slot for slot in itertools.count() if slot not in taken)
    if worker.slot >= len(worker_sockets):
        return
    path = worker_sockets[worker.slot]
    if accepts(path):
        return
    index = next(i for i, listener in enumerate(server.LISTENERS) if listener.cfg_addr == path)
    old = server.LISTENERS[index]
    # The list the new worker was given (worker.sockets) is this one.
    server.LISTENERS[index] = gunicorn_sock.UnixSocket(path, server.cfg, server.log)
    old.close()


def post_fork(server, worker) -> None:  # noqa: ANN001  (gunicorn's hook signature)
    """In the worker: accept on its own slot's socket, and on any that is no worker's own (the
    bench's TCP port); not on the other workers' sockets. A worker beyond APP_WORKERS has no slot
    of its own and accepts on all: one added with gunicorn's TTIN signal, or one a HUP starts while
    the old workers still hold the slots."""
    if worker.slot >= len(worker_sockets):
        return
    others = set(worker_sockets) - {worker_sockets[worker.slot]}
    for listener in worker.sockets:
        if listener.cfg_addr in others:
            listener.close()
    worker.sockets = [listener for listener in worker.sockets if listener.cfg_addr not in others]
    worker.own_path = worker_sockets[worker.slot]


def child_exit(server, worker) -> None:  # noqa: ANN001  (gunicorn's hook signature)
    """In the master, after a worker exited: counted for appserver_worker_restarts (app/stack/metrics.py)."""
    metrics.worker_exited(worker.pid)
