"""HTTPS at nginx on the real compose stack, checked by clients we did not write.

Trixie's curl (in the loadtest image, built with nghttp3) speaks HTTP/1.1, HTTP/2 and HTTP/3 to the
published port; sslyze scans the TLS configuration; Python's ssl module reads the served
certificate while a certificate is swapped under load. One stack per server serves every test
that needs a running stack, with a TLS_DIR of its own issued by a CA of its own (scripts/local_tls.py
with --secrets), so the swap test can replace its certificate. Without a Docker engine these tests
fail and say why; they never skip.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import local_tls
import pytest
import requests
from compose_stack import ComposeStack, compose_stack
from harness import HOST, ROOT, SERVERS, read_dotenv
from sslyze import (
    AllScanCommandsAttempts,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)
from sslyze.plugins.session_resumption.implementation import TlsResumptionSupportEnum

pytestmark = pytest.mark.e2e

LOADTEST_IMAGE = "wsgi-stack/loadtest:latest"
NGINX_IMAGE = "wsgi-stack/nginx:latest"
DOTENV = read_dotenv()
TLS_HOSTS = DOTENV["ALLOWED_HOSTS"]
# Mozilla's intermediate TLS 1.2 list, as nginx is configured with it (not a copy of it).
TEMPLATE = (ROOT / "nginx" / "nginx.conf.template").read_text()
INTERMEDIATE_CIPHERS = set(re.search(r"^\s*ssl_ciphers\s+([^;\s]+);", TEMPLATE, re.MULTILINE).group(1).split(":"))


@dataclass
class TlsStack:
    """A running compose stack whose TLS_DIR is `secrets / "tls"`, issued by `secrets / "ca"`."""

    compose: ComposeStack
    secrets: Path

    @property
    def ca(self) -> Path:
        return self.secrets / "ca" / "ca.pem"

    @property
    def tls_dir(self) -> Path:
        return self.secrets / "tls"

    @property
    def https(self) -> str:
        return f"https://{HOST}:{self.compose.https_port}"

    def curl(self, *args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
        """Trixie's curl on the host network; `localhost` resolves to 127.0.0.1 (for SNI and Host)."""
        return self.in_loadtest_image(
            "curl", "--silent", "--show-error", "--max-time", "20", "--cacert", "/ca.pem",
            "--resolve", f"{HOST}:{self.compose.https_port}:127.0.0.1", *args, timeout=timeout,
        )  # fmt: skip

    def in_loadtest_image(self, entrypoint: str, *args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
        # The CA certificate alone: its directory is private to root, the image runs as uid 10003.
        return subprocess.run(
            ["docker", "run", "--rm", "--network", "host", "--entrypoint", entrypoint,
             "-v", f"{self.ca}:/ca.pem:ro", LOADTEST_IMAGE, *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def get(self, path: str, session: requests.Session | None = None, **kwargs: object) -> requests.Response:
        """GET over HTTPS from this process, trusting the stack's own CA."""
        url = f"https://127.0.0.1:{self.compose.https_port}{path}"
        fetch = session.get if session else requests.get
        return fetch(url, headers={"Host": HOST}, verify=str(self.ca), timeout=10, **kwargs)

    def http_get(self, path: str) -> requests.Response:
        """GET over plain HTTP, redirects not followed."""
        url = f"http://127.0.0.1:{self.compose.port}{path}"
        return requests.get(url, headers={"Host": HOST}, timeout=10, allow_redirects=False)

    def served_serial(self) -> str:
        """The serial number of the certificate nginx serves to a new connection for `localhost`."""
        context = ssl.create_default_context(cafile=str(self.ca))
        with (
            socket.create_connection(("127.0.0.1", self.compose.https_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            return tls.getpeercert()["serialNumber"]

    def nginx_log(self) -> str:
        done = self.compose.compose("logs", "--no-log-prefix", "nginx", check=False)
        return done.stdout + done.stderr


def file_serial(cert: Path) -> str:
    done = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-serial"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().removeprefix("serial=").upper()


def new_secrets(directory: Path) -> Path:
    """A CA of our own and a certificate from it for ALLOWED_HOSTS, as `make up` makes them."""
    with contextlib.redirect_stdout(io.StringIO()) as said:
        made = local_tls.main(["--hosts", TLS_HOSTS, "--secrets", str(directory)])
    assert made == 0, said.getvalue()
    return directory


def curl_reports(stdout: str) -> list[dict]:
    """The JSON objects curl's --write-out printed one after the other (%{json}, %{header_json})."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(stdout):
        if stdout[at].isspace():
            at += 1
            continue
        value, at = decoder.raw_decode(stdout, at)
        found.append(value)
    return found


@pytest.fixture(scope="module", params=SERVERS)
def tls_stack(
    request: pytest.FixtureRequest, images: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsStack]:
    """One running stack per server for the whole module, on a TLS_DIR of its own."""
    secrets = new_secrets(tmp_path_factory.mktemp(f"tls-{request.param}"))
    running = compose_stack(request.param)
    running.overrides["TLS_DIR"] = str(secrets / "tls")
    try:
        running.up()
        yield TlsStack(running, secrets)
    finally:
        running.down("--volumes")


# --- 1. Protocol negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize(("option", "version"), [("--http1.1", "1.1"), ("--http2", "2"), ("--http3-only", "3")])
def test_curl_gets_plaintext_over_each_http_version(tls_stack, option, version):
    done = tls_stack.curl(option, "--output", "/dev/null", "--write-out", "%{json}\n%{header_json}",
                          f"{tls_stack.https}/plaintext")  # fmt: skip
    assert done.returncode == 0, done.stderr
    transfer, headers = curl_reports(done.stdout)
    assert transfer["http_code"] == 200
    assert transfer["http_version"] == version
    assert headers["x-app-server"] == [tls_stack.compose.server]
    # HTTP/3 is advertised for the published port, on every HTTPS response, whatever the protocol.
    assert headers["alt-svc"] == [f'h3=":{tls_stack.compose.https_port}"; ma=86400']
    assert headers["strict-transport-security"] == [f"max-age={DOTENV['HSTS_SECONDS']}; includeSubDomains"]


# --- 2. The TLS configuration, scanned ------------------------------------------------------------


def sslyze_scan(stack: TlsStack, commands: set[ScanCommand]) -> AllScanCommandsAttempts:
    """sslyze's verdicts for `commands`, failing the test when a probe could not run: the legacy
    protocols need nassl's own old OpenSSL, and a probe that did not run is no answer."""
    location = ServerNetworkLocation(hostname=HOST, port=stack.compose.https_port, ip_address="127.0.0.1")
    request = ServerScanRequest(
        server_location=location,
        network_configuration=ServerNetworkConfiguration(tls_server_name_indication=HOST),
        scan_commands=commands,
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (scan,) = scanner.get_results()
    assert scan.scan_status == ServerScanStatusEnum.COMPLETED, scan.connectivity_error_trace
    for command in commands:
        attempt = getattr(scan.scan_result, command.value)
        assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, f"{command.value}: {attempt.error_trace}"
    return scan.scan_result


def test_sslyze_finds_only_tls12_and_13_with_intermediate_ciphers_and_session_resumption(tls_stack):
    protocols = {
        "SSL 2.0": ScanCommand.SSL_2_0_CIPHER_SUITES, "SSL 3.0": ScanCommand.SSL_3_0_CIPHER_SUITES,
        "TLS 1.0": ScanCommand.TLS_1_0_CIPHER_SUITES, "TLS 1.1": ScanCommand.TLS_1_1_CIPHER_SUITES,
        "TLS 1.2": ScanCommand.TLS_1_2_CIPHER_SUITES, "TLS 1.3": ScanCommand.TLS_1_3_CIPHER_SUITES,
    }  # fmt: skip
    result = sslyze_scan(tls_stack, {*protocols.values(), ScanCommand.SESSION_RESUMPTION})
    suites = {name: getattr(result, command.value).result for name, command in protocols.items()}
    for legacy in ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1"):
        assert suites[legacy].accepted_cipher_suites == [], legacy
        assert suites[legacy].rejected_cipher_suites, f"{legacy}: no suite was tried"
    assert suites["TLS 1.2"].accepted_cipher_suites and suites["TLS 1.3"].accepted_cipher_suites
    tls12 = {suite.cipher_suite.openssl_name for suite in suites["TLS 1.2"].accepted_cipher_suites}
    assert tls12 <= INTERMEDIATE_CIPHERS, tls12 - INTERMEDIATE_CIPHERS
    for name, found in suites.items():
        weak = [suite.cipher_suite.name for suite in found.accepted_cipher_suites if suite.cipher_suite.key_size < 128]
        assert weak == [], name
    print(f"TLS 1.2: {sorted(tls12)}; TLS 1.3: "
          f"{sorted(suite.cipher_suite.name for suite in suites['TLS 1.3'].accepted_cipher_suites)}")  # fmt: skip

    # sslyze resumes 5 sessions by id, each on a new connection that any nginx worker may accept: all 5
    # resume only with a cache shared by the workers (a per-worker one resumes some). With both
    # cores busy, one resumption in a few scans was seen to fall back to a full handshake (the new
    # connection seemingly outran the first worker's cache write), so a partial result is scanned
    # once more before it counts.
    resumption = result.session_resumption.result
    if resumption.session_id_resumption_result == TlsResumptionSupportEnum.PARTIALLY_SUPPORTED:
        print(f"session resumption: {resumption.session_id_successful_resumptions_count} of 5; scanning again")
        resumption = sslyze_scan(tls_stack, {ScanCommand.SESSION_RESUMPTION}).session_resumption.result
    assert resumption.session_id_resumption_result == TlsResumptionSupportEnum.FULLY_SUPPORTED, resumption
    # ssl_session_tickets off (nginx.conf.template says why): resumption by session id only.
    assert resumption.tls_ticket_successful_resumptions_count == 0


# --- 3. Streaming to a client that asks for gzip --------------------------------------------------

# Each line stamped with the time it reached the client, so arrival times can be compared with the
# send time each chunk carries (same host clock: containers share it).
STAMP_LINES = 'curl "$@" | while IFS= read -r line; do printf "%s %s\\n" "$(date +%s.%N)" "$line"; done'


@pytest.mark.parametrize(("option", "version"), [("--http2", "2"), ("--http3-only", "3")])
@pytest.mark.parametrize("path", ["/events?count=4&interval_ms=400", "/stream?chunks=4&interval_ms=400"])
def test_streams_arrive_chunk_by_chunk_over_http2_and_http3_with_gzip_asked(tls_stack, path, option, version):
    done = tls_stack.in_loadtest_image(
        "sh", "-c", STAMP_LINES, "curl", "--silent", "--show-error", "--max-time", "20", "--cacert", "/ca.pem",
        "--resolve", f"{HOST}:{tls_stack.compose.https_port}:127.0.0.1", option, "--no-buffer", "--compressed",
        "--write-out", "%{stderr}%{http_code} %{http_version} [%header{content-encoding}]", f"{tls_stack.https}{path}",
    )  # fmt: skip
    code, got_version, encoding = done.stderr.strip().splitlines()[-1].split(" ")
    assert (code, got_version) == ("200", version), done.stderr
    # nginx compresses the plain-text stream (flushing each chunk) and leaves SSE alone (gzip_types).
    assert encoding == ("[]" if path.startswith("/events") else "[gzip]")
    chunks = []  # (arrived, sent) per chunk
    for line in done.stdout.splitlines():
        arrived, _, text = line.partition(" ")
        if path.startswith("/events") and text.startswith("data: "):
            chunks.append((float(arrived), json.loads(text.removeprefix("data: "))["sent_at"]))
        elif path.startswith("/stream") and text:
            chunks.append((float(arrived), float(text.split(" ")[1])))
    assert len(chunks) == 4, done.stdout
    lags = [arrived - sent for arrived, sent in chunks]
    spread = chunks[-1][0] - chunks[0][0]
    print(f"{path} over HTTP/{version}: arrived over {spread:.2f}s, lag per chunk {[f'{lag:.3f}' for lag in lags]}")
    # Sent 0.4 s apart. Each chunk reached the client before the app sent the next one: none was held
    # back to travel with a later chunk (held to the end, all four would arrive together, 1.2 s late).
    for (arrived, _), (_, next_sent) in itertools.pairwise(chunks):
        assert arrived < next_sent, lags


# --- 4. Plain HTTP: the redirect and ACME's webroot ------------------------------------------------


def test_plain_http_redirects_to_https_without_https_only_headers(tls_stack):
    response = tls_stack.http_get("/json?a=1")
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{HOST}:{tls_stack.compose.https_port}/json?a=1"
    assert "Strict-Transport-Security" not in response.headers
    assert "Alt-Svc" not in response.headers
    followed = tls_stack.get("/json")
    assert followed.status_code == 200 and followed.json() == {"message": "Hello, World!"}


def test_acme_challenge_is_served_over_plain_http_from_the_volume(tls_stack):
    project = tls_stack.compose.project
    (volume,) = subprocess.run(
        ["docker", "volume", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={project}",
         "--filter", "label=com.docker.compose.volume=acme"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    token, content = "e2e-" + os.urandom(8).hex(), "e2e-key-authorization." + os.urandom(8).hex()
    # As an ACME client's container would: write into the volume nginx mounts read-only.
    subprocess.run(
        ["docker", "run", "--rm", "--user", "0", "--entrypoint", "sh", "-v", f"{volume}:/w", NGINX_IMAGE, "-c",
         f'mkdir -p /w/.well-known/acme-challenge && printf %s "{content}" >/w/.well-known/acme-challenge/{token}'],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    served = tls_stack.http_get(f"/.well-known/acme-challenge/{token}")
    assert served.status_code == 200, served.text
    assert served.text == content
    assert "Location" not in served.headers
    assert "Strict-Transport-Security" not in served.headers
    missing = tls_stack.http_get("/.well-known/acme-challenge/no-such-token")
    assert missing.status_code == 404
    assert "Location" not in missing.headers


# --- 5. A certificate swap under load -------------------------------------------------------------


# What a client sees when it sends a request on a kept-alive connection that the server closed.
IDLE_CLOSE = "Remote end closed connection without response"


@dataclass
class Load:
    """Closed-loop GETs of /plaintext: half the threads on kept-alive connections, half on a new
    connection per request; stops at `stop` or after `limit` seconds, whichever comes first.

    HTTP/1.1 has no way to say "going away" on an idle connection: at a reload nginx's old workers
    close their idle kept-alive connections, and a request already on its way meets the close.
    Browsers and curl send such a request again on a new connection (RFC 9112, 9.3.1), and so does
    this client, once, only for a reused connection closed before any response; each such retry is
    recorded with its time, so the test can bound them. Anything else fails."""

    stack: TlsStack
    threads: int = 4
    limit: float = 20
    stop: threading.Event = field(default_factory=threading.Event)
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    retried: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    workers: list[threading.Thread] = field(default_factory=list)

    def fetch(self, session: requests.Session | None) -> str | None:
        """None when /plaintext was answered as it should be, else what went wrong."""
        try:
            response = self.stack.get("/plaintext", session=session)
        except requests.RequestException as error:
            return f"{type(error).__name__}: {error}"
        if response.status_code != 200 or response.text != "Hello, World!":
            return f"{response.status_code} {response.text[:100]}"
        return None

    def run(self, kept_alive: bool) -> None:
        deadline = time.monotonic() + self.limit
        session = requests.Session() if kept_alive else None
        # Whether the session holds a connection that has served a request (and so may be reused).
        reused = False
        while not self.stop.is_set() and time.monotonic() < deadline:
            failure = self.fetch(session)
            if failure and session and reused and IDLE_CLOSE in failure:
                with self.lock:
                    self.retried.append(time.monotonic())
                session.close()
                session = requests.Session()
                failure = self.fetch(session)
            reused = session is not None and failure is None
            with self.lock:
                if failure:
                    self.failures.append(f"{'kept-alive' if kept_alive else 'new'}: {failure}")
                else:
                    self.ok += 1
        if session:
            session.close()

    def __enter__(self) -> Load:
        for number in range(self.threads):
            self.workers.append(threading.Thread(target=self.run, args=(number % 2 == 0,), daemon=True))
            self.workers[-1].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(timeout=15)


def wait_for_serial(stack: TlsStack, serial: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if stack.served_serial() == serial:
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"nginx still serves {stack.served_serial()}, not {serial}, after {timeout}s")


def rewrite_in_place_unnoticed(target: Path, source: Path) -> None:
    """New contents, same inode and modification time: what follow-upstream.sh watches stays the
    same, so only an explicit reload can load the file."""
    before = target.stat()
    with target.open("r+b") as out:
        out.write(source.read_bytes())
        out.truncate()
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_certificate_swap_under_load_by_make_tls_reload_and_by_the_follower(tls_stack, tmp_path):
    hosts = TLS_HOSTS.split(",")
    cert, key = tls_stack.tls_dir / "cert.pem", tls_stack.tls_dir / "key.pem"
    first = file_serial(cert)
    assert tls_stack.served_serial() == first
    reloads = []  # (from, to) monotonic times: when each reload may have closed connections
    with Load(tls_stack) as load:
        time.sleep(1.5)
        # make tls-reload: a new pair from the same CA, written so that the follower cannot see it.
        local_tls.issue(tls_stack.secrets / "ca", tmp_path / "cert.pem", tmp_path / "key.pem", hosts)
        second = file_serial(tmp_path / "cert.pem")
        rewrite_in_place_unnoticed(key, tmp_path / "key.pem")
        rewrite_in_place_unnoticed(cert, tmp_path / "cert.pem")
        started = time.monotonic()
        reload = tls_stack.compose.make("tls-reload", timeout=60)
        assert reload.returncode == 0, reload.stdout + reload.stderr
        assert "reload-tls.sh: nginx reloaded with /run/tls/cert.pem" in reload.stdout + reload.stderr
        by_make = wait_for_serial(tls_stack, second, timeout=5)
        reloads.append((started, time.monotonic() + 1))
        assert "or its key changed" not in tls_stack.nginx_log(), "the follower reloaded, not make tls-reload"
        time.sleep(1)
        # The follower: files replaced as an ACME client does (new files renamed over the old).
        started = time.monotonic()
        local_tls.issue(tls_stack.secrets / "ca", cert, key, hosts)
        third = file_serial(cert)
        by_follower = wait_for_serial(tls_stack, third, timeout=8)
        reloads.append((started, time.monotonic() + 1))
        time.sleep(1.5)
    assert len({first, second, third}) == 3
    assert "follow-upstream: /run/tls/cert.pem or its key changed; reloading nginx" in tls_stack.nginx_log()
    print(f"{tls_stack.compose.server}: {load.ok} requests, {len(load.failures)} failed, {len(load.retried)} "
          f"sent again after a kept-alive connection was closed; new certificate served {by_make:.2f}s after "
          f"make tls-reload, {by_follower:.2f}s after the files changed")  # fmt: skip
    assert load.failures == []
    assert load.ok > 100
    # At most one close per kept-alive connection (2) per reload (2), and only during a reload.
    assert len(load.retried) <= 4
    assert all(any(start <= at <= end for start, end in reloads) for at in load.retried), (load.retried, reloads)


# --- 6. A certificate nginx must not serve --------------------------------------------------------


def expired_certificate(tls_dir: Path, ca_dir: Path) -> str:
    """A certificate from the stack's CA whose notAfter is a day before its notBefore."""
    work = tls_dir.parent / "work"
    work.mkdir()
    subprocess.run(
        ["openssl", "req", "-new", "-key", str(tls_dir / "key.pem"), "-subj", f"/CN={HOST}",
         "-out", str(work / "req.csr")], capture_output=True, check=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(work / "req.csr"), "-CA", str(ca_dir / "ca.pem"),
         "-CAkey", str(ca_dir / "ca.key"), "-days", "-1", "-out", str(tls_dir / "cert.pem")],
        capture_output=True, check=True,
    )  # fmt: skip
    return "TLS_CERT_FILE: /run/tls/cert.pem expired on "


def key_of_another_certificate(tls_dir: Path, ca_dir: Path) -> str:
    local_tls.issue(ca_dir, tls_dir.parent / "other-cert.pem", tls_dir / "key.pem", TLS_HOSTS.split(","))
    return "TLS_KEY_FILE: /run/tls/key.pem is not the key of the certificate /run/tls/cert.pem"


@pytest.mark.parametrize("spoil", [expired_certificate, key_of_another_certificate], ids=["expired", "wrong-key"])
def test_nginx_refuses_to_start_on_a_bad_certificate_and_says_which_file(images, tmp_path, spoil):
    secrets = new_secrets(tmp_path)
    expected = spoil(secrets / "tls", secrets / "ca")
    stack = compose_stack("gunicorn")
    stack.overrides["TLS_DIR"] = str(secrets / "tls")
    try:
        with pytest.raises(RuntimeError, match=r"nginx-1 .*(unhealthy|exited)"):
            stack.up()
        log = TlsStack(stack, secrets).nginx_log()
        assert f"nginx/check-tls.sh: {expected}" in log, log[-2000:]
        # The check's exit status (render.sh and the entrypoint pass it on): nginx never ran.
        # Docker restarts it (restart: unless-stopped): read the status between two attempts.
        (nginx,) = stack.compose("ps", "--all", "--quiet", "nginx").stdout.split()
        state = stack.inspect(nginx)["State"]
        for _ in range(100):
            if state["Status"] in ("restarting", "exited"):
                break
            time.sleep(0.1)
            state = stack.inspect(nginx)["State"]
        assert (state["Status"] in ("restarting", "exited"), state["ExitCode"]) == (True, 2), state
    finally:
        stack.down("--volumes")
