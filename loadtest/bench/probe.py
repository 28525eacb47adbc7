"""HTTP probes from inside the bench network: `make bench` runs this in the loadgen container.

    python probe.py ttfb URL [URL ...] --requests N
        N requests to each URL, taken in turns (A B A B ...), one at a time. Prints, per URL,
        the milliseconds from the request's last byte sent to the first byte of the decoded body.
    python probe.py concurrent URL --clients C --probe-url P --seconds S
        C streams at once, while one client times P (a short request) one after another.
    python probe.py ready URL --instance NAME --timeout S
        Wait until URL answers 200 from the app server instance NAME (its X-App-Instance
        header) three times in a row: nginx has found a recreated app server.
    python probe.py handshakes https://HOST:PORT/PATH --tls 1.3|1.2 --session new|reuse
            --clients C --seconds S
        TLS handshakes: C `openssl s_time` processes at once for S seconds, each opening one
        connection after another and asking for PATH on it. Prints how many connections were made
        in how many seconds, how many of them resumed a session, and the key exchange and cipher.

Every HTTP request asks for gzip, as browsers do, on its own connection (Connection: close), and the
body is de-chunked and gunzipped as it arrives: a byte counts when the application's byte can
be read, not when a gzip header or a chunk-size line arrives. Output: one JSON object on stdout.
Standard library only, so it runs in any image with Python.
"""

import argparse
import http.client
import json
import re
import socket
import subprocess
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

HOST_HEADER = "localhost"
TIMEOUT_S = 30.0


@dataclass
class Timing:
    status: int = 0
    # Milliseconds from the request sent to the first decoded body byte, and to the last.
    first_byte_ms: float | None = None
    total_ms: float | None = None
    # Milliseconds (from the request sent) at which each read yielded decoded body bytes.
    arrivals_ms: list[float] = field(default_factory=list)
    error: str = ""


class BodyDecoder:
    """Undo chunked transfer coding and gzip incrementally; feed() returns the body bytes now readable."""

    def __init__(self, chunked: bool, gzipped: bool) -> None:
        self.chunked = chunked
        self.pending = b""
        self.chunk_left = 0
        self.gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None

    def feed(self, data: bytes) -> bytes:
        raw = self._dechunk(data) if self.chunked else data
        return self.gunzip.decompress(raw) if self.gunzip and raw else raw

    def _dechunk(self, data: bytes) -> bytes:
        self.pending += data
        out = b""
        while self.pending:
            if self.chunk_left > 0:
                take = self.pending[: self.chunk_left]
                out += take
                self.pending = self.pending[len(take) :]
                self.chunk_left -= len(take)
                continue
            line_end = self.pending.find(b"\r\n")
            if line_end < 0:
                break
            line = self.pending[:line_end]
            self.pending = self.pending[line_end + 2 :]
            if line:
                self.chunk_left = int(line.split(b";")[0], 16)
        return out


def timed_get(url: str) -> Timing:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {path or '/'} HTTP/1.1\r\nHost: {HOST_HEADER}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    ).encode()
    timing = Timing()
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=TIMEOUT_S) as sock:
            sock.sendall(request)
            sent = time.perf_counter()
            head = b""
            decoder: BodyDecoder | None = None
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                if decoder is None:
                    head += data
                    if b"\r\n\r\n" not in head:
                        continue
                    header_block, data = head.split(b"\r\n\r\n", 1)
                    lines = header_block.decode("latin-1").split("\r\n")
                    timing.status = int(lines[0].split()[1])
                    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
                    decoder = BodyDecoder(
                        chunked=headers.get("transfer-encoding", "").lower() == "chunked",
                        gzipped=headers.get("content-encoding", "").lower() == "gzip",
                    )
                if decoder.feed(data):
                    timing.arrivals_ms.append((time.perf_counter() - sent) * 1000)
            if timing.arrivals_ms:
                timing.first_byte_ms = timing.arrivals_ms[0]
                timing.total_ms = timing.arrivals_ms[-1]
    except (OSError, ValueError, IndexError, zlib.error) as exc:
        # A refused connection or a malformed answer is one failed request, counted as such: not the probe's end.
        timing.error = f"{type(exc).__name__}: {exc}"
    return timing


def run_ttfb(urls: list[str], requests: int) -> dict:
    results: dict[str, list[Timing]] = {url: [] for url in urls}
    for _ in range(requests):
        for url in urls:
            results[url].append(timed_get(url))
    return {url: [asdict(t) for t in timings] for url, timings in results.items()}


def run_concurrent(url: str, clients: int, probe_url: str, seconds: float) -> dict:
    streams: list[Timing] = []
    probes: list[Timing] = []
    lock = threading.Lock()
    streams_done = threading.Event()

    def one_stream() -> None:
        timing = timed_get(url)
        with lock:
            streams.append(timing)

    def probe() -> None:
        deadline = time.monotonic() + seconds
        # Bounded by time and by count: one short request at a time while the streams run.
        for _ in range(10_000):
            if streams_done.is_set() or time.monotonic() > deadline:
                break
            probes.append(timed_get(probe_url))

    started = time.perf_counter()
    threads = [threading.Thread(target=one_stream) for _ in range(clients)]
    prober = threading.Thread(target=probe)
    for thread in threads:
        thread.start()
    prober.start()
    for thread in threads:
        thread.join(TIMEOUT_S + seconds)
    streams_done.set()
    prober.join(TIMEOUT_S)
    return {
        "wall_ms": (time.perf_counter() - started) * 1000,
        "streams": [asdict(t) for t in streams],
        "probes": [asdict(t) for t in probes],
    }


def wait_ready(url: str, instance: str, timeout_s: float) -> dict:
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    in_a_row = attempts = 0
    last = ""
    while time.monotonic() < deadline and in_a_row < 3:
        attempts += 1
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            conn.request("GET", parts.path or "/", headers={"Host": HOST_HEADER})
            response = conn.getresponse()
            response.read()
            conn.close()
            last = f"{response.status} from {response.getheader('X-App-Instance')}"
            ok = response.status == 200 and response.getheader("X-App-Instance") == instance
        except (OSError, http.client.HTTPException) as exc:
            last, ok = f"{type(exc).__name__}: {exc}", False
        in_a_row = in_a_row + 1 if ok else 0
        if not ok:
            time.sleep(0.2)
    return {"ready": in_a_row >= 3, "attempts": attempts, "last": last}


# s_time prints one character per connection, on a line of their own: "r" for a resumed session,
# "*" for a full TLS 1.2 or 1.3 handshake ("t" and "3" for TLS 1.0 and SSL 3, which nginx refuses).
S_TIME_MARKS = re.compile(r"[*rt3]+")
S_TIME_VERSION = {"1.2": "-tls1_2", "1.3": "-tls1_3"}


def run_handshakes(url: str, tls: str, session: str, clients: int, seconds: int) -> dict:
    """TLS handshakes per second from `clients` s_time processes, timed here: s_time's own figures are
    the client's CPU time, and whole seconds of wall time (its -time runs to the next second, or more).

    -www makes each connection send "GET PATH HTTP/1.0" (no Host: nginx's default server answers) and
    read the answer. TLS 1.3 needs it to resume: the server sends its session ticket after the
    handshake, and a client that never reads does not get one, so `-reuse` would do full handshakes.
    """
    parts = urlsplit(url)
    address = f"{parts.hostname}:{parts.port or 443}"
    version = S_TIME_VERSION[tls]
    # What the handshakes negotiate, from one connection before the timed ones.
    brief = subprocess.run(
        ["openssl", "s_client", "-connect", address, "-brief", version],
        input="",
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    said = brief.stdout + brief.stderr
    group = re.search(r"Negotiated TLS1\.3 group: (\S+)|Peer Temp Key: ([^,\n]+)", said)
    cipher = re.search(r"Ciphersuite: (\S+)", said)
    argv = ["openssl", "s_time", "-connect", address, f"-{session}", version, "-time", str(seconds)]
    argv += ["-www", parts.path or "/"]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(clients)
    ]
    outputs = [process.communicate(timeout=seconds + TIMEOUT_S) for process in processes]
    wall = time.perf_counter() - started
    for process, (_, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"openssl s_time exited {process.returncode}: {err.strip()[-800:]}")
    marks = "".join(line for out, _ in outputs for line in out.splitlines() if S_TIME_MARKS.fullmatch(line))
    return {
        "address": address,
        "path": parts.path,
        "tls": tls,
        "session": session,
        "clients": clients,
        "seconds": wall,
        "handshakes": len(marks),
        "resumed": marks.count("r"),
        "group": next((g for g in group.groups() if g), "") if group else "unknown",
        "cipher": cipher.group(1) if cipher else "unknown",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    ttfb = sub.add_parser("ttfb")
    ttfb.add_argument("urls", nargs="+")
    ttfb.add_argument("--requests", type=int, default=200)
    concurrent = sub.add_parser("concurrent")
    concurrent.add_argument("url")
    concurrent.add_argument("--clients", type=int, default=16)
    concurrent.add_argument("--probe-url", required=True)
    concurrent.add_argument("--seconds", type=float, default=10.0)
    ready = sub.add_parser("ready")
    ready.add_argument("url")
    ready.add_argument("--instance", required=True)
    ready.add_argument("--timeout", type=float, default=60.0)
    handshakes = sub.add_parser("handshakes")
    handshakes.add_argument("url")
    handshakes.add_argument("--tls", choices=sorted(S_TIME_VERSION), default="1.3")
    handshakes.add_argument("--session", choices=["new", "reuse"], default="new")
    handshakes.add_argument("--clients", type=int, default=4)
    handshakes.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    if args.mode == "ttfb":
        result = run_ttfb(args.urls, args.requests)
    elif args.mode == "concurrent":
        result = run_concurrent(args.url, args.clients, args.probe_url, args.seconds)
    elif args.mode == "handshakes":
        result = run_handshakes(args.url, args.tls, args.session, args.clients, args.seconds)
    else:
        result = wait_ready(args.url, args.instance, args.timeout)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
