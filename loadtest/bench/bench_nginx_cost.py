"""Section 12 of `make bench`: what each part of nginx's per-request work costs, one change at a time.

The shipped nginx in front of gunicorn (nginx-gunicorn, over the shipped Unix sockets) is measured
as shipped and with one change, in alternating short runs (the order flips every round), over many
rounds: a round's two runs are paired, so drift between rounds cancels, and the report gives the
median of the per-round differences with their range. A change is written into a copy of the
running config, checked with `nginx -t`, put in place under the lock render.sh and the upstream
follower take, and loaded with a reload; the shipped config is put back after each change. These
are measurements, not proposals: some changes drop what the stack needs (the access log, the
security headers, buffering slow clients away from the app).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench_targets import VIA_NGINX

if TYPE_CHECKING:
    from bench import Bench

SECTION = "nginx-cost"
NGINX = "nginx-gunicorn"
CONF = "/tmp/nginx/nginx.conf"  # render.sh's output in the nginx image (NGINX_RUN_DIR)
LOCK = "/tmp/nginx/config.lock"
# After a reload, the old workers close their kept-alive connections and wrk reconnects to the new.
SETTLE_S = 1.0


def substitute(pattern: str, replacement: str) -> Callable[[str], str]:
    """A change: every match of the pattern (multiline) replaced; an error if nothing matched."""

    def change(conf: str) -> str:
        changed, count = re.subn(pattern, replacement, conf, flags=re.MULTILINE)
        if not count:
            raise ValueError(f"the shipped config has nothing like {pattern!r}: the change would measure nothing")
        return changed

    return change


SECURITY_HEADERS = (
    r"^\s*add_header (X-Content-Type-Options|X-Frame-Options|Referrer-Policy|Cross-Origin-Opener-Policy) .*$"
)
# Change name -> what it does to the config (its includes inlined first).
CHANGES: dict[str, Callable[[str], str]] = {
    "access log off": substitute(r"^\s*access_log \S+ stack_json .*;$", "    access_log off;"),
    "no X-Request-ID headers": substitute(r"^\s*(proxy_set_header|add_header) X-Request-ID .*$", ""),
    "no security headers": substitute(SECURITY_HEADERS, ""),
    "gzip off": substitute(r"^(\s*)gzip on;", r"\1gzip off;"),
    "proxy_buffering off": substitute(r"^(\s*)proxy_buffering on;", r"\1proxy_buffering off;"),
    "keepalive_requests 1000": substitute(r"^(\s*)keepalive_requests 100;", r"\1keepalive_requests 1000;"),
    "worker_processes 1": substitute(r"^worker_processes \S+;", "worker_processes 1;"),
}
ALL = "all of the above"


def every(changes: list[Callable[[str], str]]) -> Callable[[str], str]:
    """The changes at once: what is left is the cost of proxying itself, the floor of this list."""

    def change(conf: str) -> str:
        for one in changes:
            conf = one(conf)
        return conf

    return change


CHANGES[ALL] = every(list(CHANGES.values()))


def inline_includes(bench: Bench, conf: str) -> str:
    """The config with every include of the stack's own files replaced by the file's text, so that a
    change reaches the lines they hold (the headers, the proxy settings)."""
    found = sorted(set(re.findall(r"^\s*include (/etc/nginx/stack/\S+);", conf, flags=re.MULTILINE)))
    texts = {path: bench.containers.exec(NGINX, "cat", path, timeout=30) for path in found}
    return re.sub(
        r"^\s*include (/etc/nginx/stack/\S+);",
        lambda match: texts[match.group(1)],
        conf,
        flags=re.MULTILINE,
    )


def load(bench: Bench, conf: str, nginx: str = NGINX) -> None:
    """Check the config, put it in place and reload nginx, under the lock of render.sh and the follower."""
    script = (
        'printf %s "$1" > "$2.bench" && nginx -e stderr -t -q -c "$2.bench" '
        '&& mv "$2.bench" "$2" && nginx -e stderr -c "$2" -s reload'
    )
    bench.containers.exec(nginx, "flock", LOCK, "sh", "-c", script, "sh", conf, CONF, timeout=60)
    time.sleep(SETTLE_S)


def nginx_cost(bench: Bench) -> None:
    print("12. nginx's per-request work, one change at a time", flush=True)
    url = VIA_NGINX["gunicorn"] + "/plaintext"
    bench.focus(url)  # the rest paused: nginx-gunicorn too, after the section before
    shipped = ""
    with bench.step(SECTION, what="the shipped config"):
        shipped = bench.containers.exec(NGINX, "cat", CONF, timeout=30)
    if not shipped:
        return
    try:
        inlined = inline_includes(bench, shipped)
        for name, change in CHANGES.items():
            changed = ""
            with bench.step(SECTION, name, what="the change"):
                changed = change(inlined)
            if not changed:
                continue
            for round_no in range(1, bench.profile.nginx_cost_rounds + 1):
                order = [("shipped", inlined), ("changed", changed)]
                for how, conf in reversed(order) if round_no % 2 == 0 else order:
                    with bench.step(SECTION, f"{name} {how}", round_no, "reload"):
                        load(bench, conf)
                        bench.wrk(SECTION, f"{name} {how}", url, round_no)
    finally:
        with bench.step(SECTION, what="the shipped config back"):
            load(bench, shipped)
