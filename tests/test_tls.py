"""HTTPS at nginx on the local-process harness: the redirect and its ACME exception, HSTS on
HTTPS only, HTTP/1.1 and HTTP/2 negotiated with curl, old protocols refused, and every way a
certificate or key can be unusable, named before nginx starts or reloads. The containers' own
nginx (1.26, with HTTP/3) is tested in tests/test_tls_e2e.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests
from harness import HOST, ROOT, LocalStack, local_stack, tls_files

CHECK_TLS = str(ROOT / "nginx" / "check-tls.sh")
CA = str(tls_files() / "ca" / "ca.pem")


def curl(stack: LocalStack, *args: str, path: str = "/plaintext") -> subprocess.CompletedProcess[str]:
    """The host's curl, resolving localhost to the stack's HTTPS port and trusting the test CA."""
    url = f"https://{HOST}:{stack.https_port}{path}"
    argv = ["curl", "-sS", "--max-time", "10", "--cacert", CA, "--resolve", f"{HOST}:{stack.https_port}:127.0.0.1"]
    return subprocess.run([*argv, *args, url], capture_output=True, text=True, timeout=20)


def test_plain_http_redirects_to_the_same_url_over_https(shipped):
    answer = requests.get(f"{shipped.base_url}/json?x=1", headers={"Host": HOST}, allow_redirects=False, timeout=5)
    assert answer.status_code == 301
    assert answer.headers["Location"] == f"https://{HOST}:{shipped.https_port}/json?x=1"
    # Over plain HTTP a browser ignores HSTS and nothing should claim HTTP/3.
    assert "Strict-Transport-Security" not in answer.headers
    assert "Alt-Svc" not in answer.headers
    # nginx's own health endpoint (any Host) is never redirected: the container healthcheck uses it.
    health = requests.get(f"{shipped.base_url}/nginx-health", headers={"Host": "health"}, timeout=5)
    assert health.status_code == 200


def test_acme_challenges_are_served_over_plain_http_from_the_webroot(shipped):
    challenges = Path(shipped.env["ACME_ROOT"]) / ".well-known" / "acme-challenge"
    challenges.mkdir(parents=True, exist_ok=True)
    (challenges / "token-abc_123").write_text("token-abc_123.thumbprint")
    url = f"{shipped.base_url}/.well-known/acme-challenge/"
    found = requests.get(url + "token-abc_123", headers={"Host": HOST}, allow_redirects=False, timeout=5)
    assert found.status_code == 200
    assert found.text == "token-abc_123.thumbprint"
    assert found.headers["Content-Type"].startswith("text/plain")
    missing = requests.get(url + "nothing-here", headers={"Host": HOST}, allow_redirects=False, timeout=5)
    assert missing.status_code == 404
    assert "X-App-Server" not in missing.headers  # nginx's own 404, never a trip upstream


def test_hsts_is_sent_on_every_https_response_and_only_there(shipped):
    seconds = shipped.env["HSTS_SECONDS"]
    hsts = f"max-age={seconds}; includeSubDomains"
    # The app's responses, nginx's static files and nginx's own error pages alike.
    for path, status in (("/json", 200), ("/static/nope.css", 404), ("/robots.txt", 200), ("/favicon.ico", 200)):
        answer = requests.get(f"{shipped.https_url}{path}", headers={"Host": HOST}, verify=CA, timeout=5)
        assert answer.status_code == status, path
        assert answer.headers.get("Strict-Transport-Security") == hsts, path
    too_large = requests.post(
        f"{shipped.https_url}/upload",
        headers={"Host": HOST},
        data=b"x" * (int(shipped.env["MAX_BODY_MB"]) * 2**20 + 1),
        verify=CA,
        timeout=10,
    )
    assert too_large.status_code == 413
    assert too_large.headers.get("Strict-Transport-Security") == hsts
    # Django sends none of its own: one header, from nginx.
    assert requests.get(f"{shipped.https_url}/json", headers={"Host": HOST}, verify=CA, timeout=5).raw.headers.getlist(
        "Strict-Transport-Security"
    ) == [hsts]


def test_curl_negotiates_http2_and_http11_with_the_certificate_trusted(shipped):
    for flag, version in (("--http1.1", "1.1"), ("--http2", "2")):
        done = curl(shipped, flag, "-o", "/dev/null", "-w", "%{http_version} %{response_code} %{ssl_verify_result}")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [version, "200", "0"]
    headers = curl(shipped, "--http2", "-D", "-", "-o", "/dev/null").stdout.lower()
    assert f"x-app-server: {shipped.server}" in headers


def test_tls_10_and_11_are_refused_and_12_13_accepted(shipped):
    def handshake(*flags: str) -> subprocess.CompletedProcess[str]:
        # SECLEVEL=0: the client must be willing to offer the old protocols for the refusal to be the server's.
        argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{shipped.https_port}", "-servername", HOST]
        return subprocess.run(
            [*argv, "-cipher", "DEFAULT:@SECLEVEL=0", *flags], input="", capture_output=True, text=True, timeout=20
        )

    for old in ("-tls1", "-tls1_1"):
        assert "Cipher is (NONE)" in handshake(old).stdout, old
    for current, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        done = handshake(current)
        assert f"Protocol  : {name}" in done.stdout or f"New, {name}" in done.stdout, done.stdout[-1500:]


def tls_env(stack: LocalStack, cert: Path, key: Path) -> dict[str, str]:
    return {**stack.env, "TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)}


def render(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "nginx" / "render.sh")], env=env, capture_output=True, text=True, timeout=30)


def expired_pair(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate that expired in 2020 (openssl ca can date one in the past)."""
    (directory / "index.txt").touch()
    (directory / "serial").write_text("01\n")
    config = directory / "ca.cnf"
    config.write_text(
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\n"
        "default_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n"
    )
    cert, key = directory / "expired.pem", directory / "expired-key.pem"
    steps = [
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
        ["req", "-new", "-key", str(key), "-subj", f"/CN={HOST}", "-out", "r.csr"],
        ["ca", "-batch", "-config", str(config), "-selfsign", "-keyfile", str(key), "-in", "r.csr",
         "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-out", str(cert)],
    ]  # fmt: skip
    for step in steps:
        subprocess.run(["openssl", *step], cwd=directory, check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture(scope="module")
def idle() -> LocalStack:
    """A stack that is never started: its environment is what render.sh is given."""
    return local_stack("gunicorn")


def test_every_unusable_certificate_or_key_stops_nginx_naming_the_file(idle, tmp_path):
    good_cert, good_key = Path(idle.env["TLS_CERT_FILE"]), Path(idle.env["TLS_KEY_FILE"])
    expired_cert, expired_key = expired_pair(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted-key.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(good_key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        check=True,
        timeout=30,
    )
    missing = tmp_path / "missing.pem"
    cases = {
        "missing certificate": (missing, good_key, f"TLS_CERT_FILE: {missing} does not exist"),
        "missing key": (good_cert, missing, f"TLS_KEY_FILE: {missing} does not exist"),
        "directory": (tmp_path, good_key, f"TLS_CERT_FILE: {tmp_path} is not a regular file"),
        "not PEM": (garbage, good_key, f"TLS_CERT_FILE: {garbage} is not a PEM certificate"),
        "key not PEM": (good_cert, garbage, f"TLS_KEY_FILE: {garbage} is not an unencrypted PEM private key"),
        "encrypted key": (good_cert, encrypted, f"TLS_KEY_FILE: {encrypted} is not an unencrypted PEM private key"),
        "expired": (expired_cert, expired_key, f"TLS_CERT_FILE: {expired_cert} expired on Feb  1 00:00:00 2020 GMT"),
        "mismatched key": (good_cert, expired_key, f"TLS_KEY_FILE: {expired_key} is not the key of the certificate"),
    }
    for case, (cert, key, message) in cases.items():
        done = render(tls_env(idle, cert, key))
        assert done.returncode == 2, case
        assert message in done.stderr, (case, done.stderr)
        assert "secret" not in done.stderr


def test_an_unreadable_key_is_named_with_the_user_nginx_runs_as(idle, tmp_path):
    """As nobody, as the container's nginx is not root (root reads every file)."""

    def check_as_nobody(key: Path) -> subprocess.CompletedProcess[str]:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", CHECK_TLS]
        return subprocess.run([*argv, idle.env["TLS_CERT_FILE"], str(key)], capture_output=True, text=True, timeout=30)

    # pytest's tmp_path sits in a directory only root may enter.
    hidden = check_as_nobody(tmp_path / "key.pem")
    assert hidden.returncode == 2
    assert "key.pem cannot be reached by uid 65534: its directory is not searchable" in hidden.stderr
    shared = Path(idle.workdir)  # 0755, as TLS_DIR must be
    key = shared / "unreadable-key.pem"
    key.write_bytes(Path(idle.env["TLS_KEY_FILE"]).read_bytes())
    key.chmod(0o600)
    done = check_as_nobody(key)
    assert done.returncode == 2
    assert f"TLS_KEY_FILE: {key} is not readable by uid 65534, which nginx runs as" in done.stderr


def test_a_certificate_that_does_not_name_a_host_is_a_warning_not_a_stop(idle):
    done = subprocess.run(
        [CHECK_TLS, idle.env["TLS_CERT_FILE"], idle.env["TLS_KEY_FILE"]],
        env={**idle.env, "ALLOWED_HOSTS": "localhost,www.example.com"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert "does not name www.example.com (ALLOWED_HOSTS)" in done.stderr
    assert "does not name localhost" not in done.stderr


def test_a_bad_certificate_on_reload_leaves_nginx_serving_the_old_one(shipped, tmp_path):
    expired_cert, expired_key = expired_pair(tmp_path)
    before = curl(shipped, "-o", "/dev/null", "-w", "%{response_code}")
    done = subprocess.run(
        [str(ROOT / "nginx" / "reload-tls.sh")],
        env=tls_env(shipped, expired_cert, expired_key),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "expired on" in done.stderr
    after = curl(shipped, "-o", "/dev/null", "-w", "%{response_code} %{ssl_verify_result}")
    assert before.stdout == "200"
    assert after.stdout.split() == ["200", "0"]


def test_bad_tls_settings_stop_render_naming_them(idle):
    for name, value, message in (
        ("HTTPS_REDIRECT", "yes", "HTTPS_REDIRECT must be 1"),
        ("HTTPS_PORT", "https", "HTTPS_PORT must be a whole number"),
        ("HSTS_SECONDS", "", "HSTS_SECONDS must be a whole number"),
        ("TLS_CERT_FILE", "", "TLS_CERT_FILE (the certificate chain, PEM) is required"),
    ):
        done = render({**idle.env, name: value})
        assert done.returncode == 2, name
        assert message in done.stderr, (name, done.stderr)
