"""What a browser asks of the stack: nginx answers /favicon.ico and /robots.txt itself, and a real
Chromium (Debian's, driven by Playwright) opens every page the app has with a clean console.

Both servers, through real nginx on loopback (tests/harness.py). Playwright never downloads a
browser of its own here: it drives /usr/bin/chromium, which .ci/run installs with apt.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from harness import HOST, ROOT, LocalStack, tls_files
from playwright.sync_api import Browser, ConsoleMessage, Playwright, Request, Response, sync_playwright

PUBLIC = ROOT / "nginx" / "public"
CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own flags come on top of these; its browser download cannot work here.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every GET page of app/stack/urls.py, with parameters that finish quickly. A page a person can
# open from the index page's links must be here (test_every_linked_page_is_checked).
PAGES = [
    "/",
    "/plaintext",
    "/json",
    "/db",
    "/queries?n=20",
    "/stream?chunks=2&interval_ms=10",
    "/events?count=2&interval_ms=10",
    "/slow?ms=50",
    "/request-info",
    "/healthz",
    "/readyz",
    "/robots.txt",
]
FILES = [("/favicon.ico", "image/x-icon"), ("/robots.txt", "text/plain")]


def access_log_entries(stack: LocalStack, wanted: str, timeout: float = 5) -> list[dict]:
    """nginx's JSON access log lines that contain `wanted`, waiting for its buffer (flush=1s)."""
    log = Path(stack.env["NGINX_ACCESS_LOG"])
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        found = [json.loads(line) for line in lines if wanted in line]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# --- nginx answers the files itself -------------------------------------------------------------


def test_the_favicon_is_a_real_icon():
    data = (PUBLIC / "favicon.ico").read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind) == (0, 1), "not an ICO file"
    assert count >= 1
    for index in range(count):
        width, height, _, _, _, bits, size, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * index)
        assert (width, height, bits) in {(16, 16, 32), (32, 32, 32)}
        assert offset + size <= len(data)
    assert len(data) < 10_000, "a favicon is fetched by every new visitor: keep it small"


def test_robots_txt_keeps_crawlers_off_the_demo_stack():
    lines = [line for line in (PUBLIC / "robots.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["User-agent: *", "Disallow: /"]


@pytest.mark.parametrize(("path", "content_type"), FILES)
def test_nginx_answers_the_file_itself_and_the_app_never_sees_it(stack, path, content_type):
    request_id = f"file-{secrets.token_hex(8)}"
    response = requests.get(stack.base_url + path, headers={"Host": HOST, "X-Request-ID": request_id}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.content == (PUBLIC / path.lstrip("/")).read_bytes()
    assert "X-App-Server" not in response.headers
    # Not content-hashed like /static/: a day, revalidated after that with the ETag.
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    assert "ETag" in response.headers
    # The security headers and the request id come from nginx/headers.conf, as on static files.
    assert response.headers["X-Request-ID"] == request_id
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    # nginx logged it with no upstream: it never picked an app server for it.
    [entry] = access_log_entries(stack, request_id)
    assert (entry["uri"], entry["status"], entry["upstream"]) == (path, 200, "")
    # An app server logs every 4xx it answers (a 404 for these before nginx served them).
    app_log = stack.app_log.read_text()
    assert request_id not in app_log
    assert path not in app_log


def test_a_revalidation_is_answered_304_by_nginx(stack):
    first = requests.get(stack.base_url + "/favicon.ico", headers={"Host": HOST}, timeout=10)
    again = requests.get(
        stack.base_url + "/favicon.ico", headers={"Host": HOST, "If-None-Match": first.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 304
    assert "X-App-Server" not in again.headers


# --- a real browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Callable[[], Browser]]:
    """Chromium, launched by the first test that opens a page: a missing browser fails that test
    (FAILED with the reason, not a setup ERROR, and never a skip)."""
    launched: list[Browser] = []

    def get() -> Browser:
        if not launched:
            if not CHROMIUM.exists():
                pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium; .ci/run does)")
            # Trust the test certificate's key, and only it, as a person trusting the local CA would.
            pin = f"--ignore-certificate-errors-spki-list={spki_sha256(tls_files() / 'tls' / 'cert.pem')}"
            launched.append(
                playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, pin], timeout=60_000)
            )
        return launched[0]

    yield get
    for each in launched:
        each.close()


def spki_sha256(cert: Path) -> str:
    """The base64 SHA-256 of the certificate's public key, as Chromium's pin list wants it."""
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-pubkey"], capture_output=True, text=True, check=True
    ).stdout
    body = "".join(line for line in der.splitlines() if "-----" not in line)
    return base64.b64encode(hashlib.sha256(base64.b64decode(body)).digest()).decode()


class Visit:
    """One page opened in a fresh browser context, with everything that went wrong on the way."""

    def __init__(self, browser: Browser, stack: LocalStack, path: str, url: str | None = None) -> None:
        self.url = url or f"http://{HOST}:{stack.nginx_port}{path}"
        self.problems: list[str] = []
        self.responses: list[Response] = []
        self.context = browser.new_context()
        self.context.set_default_timeout(20_000)
        self.context.on("requestfailed", self.request_failed)
        self.context.on("response", lambda response: self.responses.append(response))
        self.page = self.context.new_page()
        self.page.on("console", self.console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} ({message.location.get('url')})")

    def request_failed(self, request: Request) -> None:
        self.problems.append(f"failed request: {request.url} ({request.failure})")

    def open(self) -> Response:
        response = self.page.goto(self.url, wait_until="load")
        assert response is not None, self.url
        # The browser asks for /favicon.ico after the load event; give its answer time to arrive.
        self.page.wait_for_timeout(500)
        return response

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Callable[[], Browser], stack: LocalStack) -> Iterator[Callable[[str], Visit]]:
    visits: list[Visit] = []

    def open_page(path: str) -> Visit:
        visits.append(Visit(browser(), stack, path))
        return visits[-1]

    yield open_page
    for each in visits:
        each.close()


@pytest.mark.parametrize("path", PAGES)
def test_a_browser_opens_the_page_with_a_clean_console(stack, visit, path):
    page = visit(path)
    response = page.open()
    assert response.status == 200, page.url
    assert page.problems == [], page.url
    bad = [(each.url, each.status) for each in page.responses if each.status >= 400]
    assert bad == [], page.url


def test_every_linked_page_is_checked(stack, visit):
    page = visit("/")
    page.open()
    links = page.page.eval_on_selector_all("a[href]", "links => links.map(link => link.getAttribute('href'))")
    assert links, "the index page has no links"
    checked = {urlsplit(path).path for path in PAGES}
    assert {urlsplit(link).path for link in links} <= checked


def test_an_event_source_on_the_index_page_gets_its_events(stack, visit):
    page = visit("/")
    page.open()
    events = page.page.evaluate(
        """() => new Promise((resolve, reject) => {
            const source = new EventSource("/events?count=2&interval_ms=10");
            const seen = [];
            source.addEventListener("tick", (event) => {
                seen.push(JSON.parse(event.data).seq);
                if (seen.length === 2) { source.close(); resolve(seen); }
            });
            source.onerror = () => { source.close(); reject(new Error("EventSource error")); };
        })"""
    )
    assert events == [0, 1]
    assert page.problems == []


def test_the_browser_gets_its_favicon_from_nginx(stack, visit):
    page = visit("/")
    page.open()
    assert page.problems == []
    # Playwright hides favicon requests from its network events; nginx's access log has them.
    deadline = time.monotonic() + 10
    while True:
        asked = [entry for entry in access_log_entries(stack, "/favicon.ico", 0) if "Chrome" in entry["user_agent"]]
        if asked or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert asked, "the browser never asked for /favicon.ico"
    for entry in asked:
        assert entry["status"] in (200, 304), entry
        assert entry["upstream"] == "", f"an app server answered {entry}"


# --- over HTTPS, as shipped ---------------------------------------------------------------------


def test_a_browser_is_sent_to_https_and_gets_http2_a_secure_context_and_its_events(browser, shipped):
    page = Visit(browser(), shipped, "/", url=f"http://{HOST}:{shipped.nginx_port}/")
    try:
        response = page.open()
        assert page.page.url == f"https://{HOST}:{shipped.https_port}/"
        assert response.status == 200
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert page.page.evaluate("() => window.isSecureContext")
        protocol = page.page.evaluate("() => performance.getEntriesByType('navigation')[0].nextHopProtocol")
        assert protocol == "h2"
        events = page.page.evaluate(
            """() => new Promise((resolve, reject) => {
                const source = new EventSource("/events?count=3&interval_ms=50");
                const seen = [];
                source.addEventListener("tick", (event) => {
                    seen.push(JSON.parse(event.data).seq);
                    if (seen.length === 3) { source.close(); resolve(seen); }
                });
                source.onerror = () => { source.close(); reject(new Error("EventSource error")); };
            })"""
        )
        assert events == [0, 1, 2]
        assert page.problems == []
    finally:
        page.close()
