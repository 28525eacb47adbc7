"""A local certificate authority and a certificate from it for ALLOWED_HOSTS, so that `make up`
serves https:// on a machine with no public name. Real deployments point TLS_DIR, TLS_CERT_FILE
and TLS_KEY_FILE at their own files instead (docs/operations.md, "HTTPS"), and this does nothing.

    python3 scripts/local_tls.py [--hosts localhost,127.0.0.1] [--secrets .secrets]

Keeps the CA in SECRETS/ca (its key never leaves that private directory) and the certificate
and key in SECRETS/tls, the directory nginx mounts. Nothing is made again while the
certificate names every host and has 30 days left; otherwise a new one is issued from the same
CA, so a CA a person has trusted stays trusted. openssl's command line does the work: it is on
every machine that has ca-certificates.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from dotenv_file import read_dotenv

ROOT = Path(__file__).resolve().parent.parent
# Browsers cap publicly trusted certificates at 398 days; a local one follows the same rule.
CERT_DAYS = 397
CA_DAYS = 3650
RENEW_WITHIN_DAYS = 30


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def names_every_host(cert: Path, hosts: list[str]) -> bool:
    for host in hosts:
        option = "-checkip" if is_ip(host) else "-checkhost"
        if "does match" not in openssl("x509", "-in", str(cert), "-noout", option, host).stdout:
            return False
    return True


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def still_good(cert: Path, key: Path, hosts: list[str]) -> bool:
    if not (cert.exists() and key.exists()):
        return False
    lasts = openssl("x509", "-in", str(cert), "-noout", "-checkend", str(RENEW_WITHIN_DAYS * 86400))
    return lasts.returncode == 0 and names_every_host(cert, hosts)


def run(*args: str) -> None:
    done = openssl(*args)
    if done.returncode != 0:
        raise SystemExit(f"local_tls.py: openssl {args[0]} failed:\n{done.stderr.strip()}")


def make_ca(ca_dir: Path) -> None:
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key, cert = ca_dir / "ca.key", ca_dir / "ca.pem"
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    key.chmod(0o600)
    # One CA per checkout: its name says whose it is, so a person who trusts it can find it again.
    subject = f"/CN=wsgi-stack local CA ({os.uname().nodename})"
    run(
        "req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", str(CA_DAYS), "-subj", subject,
        "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def issue(ca_dir: Path, cert: Path, key: Path, hosts: list[str]) -> None:
    """An ECDSA P-256 certificate for `hosts`: the smallest and fastest key browsers all accept."""
    san = ",".join(f"IP:{host}" if is_ip(host) else f"DNS:{host}" for host in hosts)
    with tempfile.TemporaryDirectory() as tmp:
        csr, new_key, new_cert, ext = (Path(tmp) / name for name in ("req.csr", "key.pem", "cert.pem", "ext.cnf"))
        ext.write_text(
            f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(new_key))
        run("req", "-new", "-key", str(new_key), "-out", str(csr), "-subj", f"/CN={hosts[0]}")
        run(
            "x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.pem"), "-CAkey", str(ca_dir / "ca.key"),
            "-CAcreateserial", "-out", str(new_cert), "-days", str(CERT_DAYS), "-extfile", str(ext),
        )  # fmt: skip
        # The directory is mounted into nginx, which runs as another user: it must read the key.
        cert.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        cert.parent.chmod(0o755)
        new_key.chmod(0o644)
        new_cert.chmod(0o644)
        # Key first, then the certificate: a reload between the two fails check-tls.sh's
        # "not the key of the certificate" and leaves nginx on the pair it had.
        new_key.replace(key)
        new_cert.replace(cert)


def main(argv: list[str] | None = None) -> int:
    dotenv = {**read_dotenv(), **os.environ}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default=dotenv["ALLOWED_HOSTS"], help="comma-separated; default: ALLOWED_HOSTS")
    parser.add_argument("--secrets", type=Path, default=ROOT / ".secrets")
    args = parser.parse_args(argv)
    hosts = [host.strip() for host in args.hosts.split(",") if host.strip()]
    if not hosts or any("*" in host or host.startswith(".") for host in hosts):
        print(
            f"local_tls.py: ALLOWED_HOSTS must list host names for the certificate, got {args.hosts!r}", file=sys.stderr
        )
        return 2
    ca_dir, tls_dir = args.secrets / "ca", args.secrets / "tls"
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    if still_good(cert, key, hosts):
        return 0
    if not (ca_dir / "ca.pem").exists():
        make_ca(ca_dir)
        print(f"Made a local certificate authority: {ca_dir / 'ca.pem'} (its key stays in {ca_dir}).")
    issue(ca_dir, cert, key, hosts)
    print(
        f"Issued {cert} for {', '.join(hosts)}, valid {CERT_DAYS} days. To trust https:// here, trust the CA:\n"
        f"  curl --cacert {ca_dir / 'ca.pem'} https://{hosts[0]}:<HTTPS_PORT>/\n"
        f"  cp {ca_dir / 'ca.pem'} /usr/local/share/ca-certificates/wsgi-stack.crt && update-ca-certificates\n"
        "  or import it in the browser's certificate settings (Authorities)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
