#!/bin/sh
# Renders nginx.conf.template into $NGINX_RUN_DIR/nginx.conf and prints that path.
# The container's entrypoint and the tests both use it, so both run the same config.
set -eu

conf_dir=$(cd "$(dirname "$0")" && pwd)
fail() {
    echo "nginx/render.sh: $*" >&2
    exit 2
}
require_int() {
    case "$2" in
    '' | *[!0-9]*) fail "$1 must be a whole number, got '$2'" ;;
    esac
}

case "${APP_SERVER:-}" in
gunicorn | uwsgi) ;;
*) fail "APP_SERVER must be one of: gunicorn, uwsgi (got '${APP_SERVER:-}')" ;;
esac
case "${APP_TRANSPORT:-}" in
unix) [ -n "${APP_SOCKET_ROOT:-}" ] || fail "APP_SOCKET_ROOT (where the app servers' sockets are) is required with APP_TRANSPORT=unix" ;;
tcp) [ -n "${APP_SERVER_ADDR:-}" ] || fail "APP_SERVER_ADDR (host:port of the app server) is required with APP_TRANSPORT=tcp" ;;
*) fail "APP_TRANSPORT must be one of: unix, tcp (got '${APP_TRANSPORT:-}')" ;;
esac
[ -n "${ALLOWED_HOSTS:-}" ] || fail "ALLOWED_HOSTS is required"
[ -n "${STATIC_ROOT:-}" ] || fail "STATIC_ROOT is required"
case "$ALLOWED_HOSTS" in
*'*'*) fail "ALLOWED_HOSTS must list host names; '*' would turn off the unknown-Host guard" ;;
esac
require_int REQUEST_TIMEOUT "${REQUEST_TIMEOUT:-}"
require_int MAX_BODY_MB "${MAX_BODY_MB:-}"
require_int HTTP_PORT "${HTTP_PORT:-}"
require_int HTTPS_PORT "${HTTPS_PORT:-}"
require_int HSTS_SECONDS "${HSTS_SECONDS:-}"
case "${HTTPS_REDIRECT:-}" in
0 | 1) ;;
*) fail "HTTPS_REDIRECT must be 1 (plain HTTP redirects to https://) or 0 (a TLS terminator is in front), got '${HTTPS_REDIRECT:-}'" ;;
esac
[ -n "${TLS_CERT_FILE:-}" ] || fail "TLS_CERT_FILE (the certificate chain, PEM) is required"
[ -n "${TLS_KEY_FILE:-}" ] || fail "TLS_KEY_FILE (the certificate's private key, PEM) is required"
"$conf_dir/check-tls.sh" "$TLS_CERT_FILE" "$TLS_KEY_FILE"

export NGINX_CONF_DIR="$conf_dir"
export NGINX_LISTEN="${NGINX_LISTEN:-8080}"
export NGINX_TLS_LISTEN="${NGINX_TLS_LISTEN:-8443}"
export NGINX_STATUS_LISTEN="${NGINX_STATUS_LISTEN:-8081}"
export ACME_ROOT="${ACME_ROOT:-/srv/acme}"
export NGINX_RUN_DIR="${NGINX_RUN_DIR:-/tmp/nginx}"
# auto: the cores this container may run on (nproc reads the CPU affinity, a cpuset's), where
# nginx's own auto counts every core the host has (sysconf), pinned or not.
case "${NGINX_WORKER_PROCESSES:=auto}" in
auto) NGINX_WORKER_PROCESSES=$(nproc) ;;
*[!0-9]* | 0*) fail "NGINX_WORKER_PROCESSES must be auto or a whole number from 1, got '$NGINX_WORKER_PROCESSES'" ;;
esac
export NGINX_WORKER_PROCESSES
export NGINX_ACCESS_LOG="${NGINX_ACCESS_LOG:-/dev/stdout}"
# nginx waits 5 s longer than the app server, whose timeout should be the one that fires.
export NGINX_READ_TIMEOUT=$((REQUEST_TIMEOUT + 5))
NGINX_SERVER_NAMES=$(echo "$ALLOWED_HOSTS" | tr ',' ' ')
export NGINX_SERVER_NAMES
# The published ports as clients see them, for redirects and the app's Host: none for 80 and 443.
port_suffix() { if [ "$1" = "$2" ]; then echo ""; else echo ":$1"; fi; }
NGINX_HTTP_PORT_SUFFIX=$(port_suffix "$HTTP_PORT" 80)
NGINX_HTTPS_PORT_SUFFIX=$(port_suffix "$HTTPS_PORT" 443)
export NGINX_HTTP_PORT_SUFFIX NGINX_HTTPS_PORT_SUFFIX
# nginx 1.25.1 turned HTTP/2 from a listen parameter into a directive, and QUIC needs http_v3.
# With both (the image), the template's `#[quic] ` lines are kept; without (Debian 12's 1.22, in
# the local tests), they are dropped and HTTP/2 goes on the TLS listen line.
if nginx -V 2>&1 | grep -q -- --with-http_v3_module; then
    quic='s/^\([[:space:]]*\)#\[quic\] /\1/'
    export NGINX_LISTEN_HTTP2=""
else
    quic='/^[[:space:]]*#\[quic\] /d'
    export NGINX_LISTEN_HTTP2=" http2"
fi

mkdir -p "$NGINX_RUN_DIR"
# follow-upstream.sh rewrites the live config's servers under the same lock: neither replaces
# the file from a copy the other has just replaced (a swap's new server would be lost).
exec 9>"$NGINX_RUN_DIR/config.lock"
flock 9
NGINX_UPSTREAM_SERVERS=$("$conf_dir/upstream-servers.sh" "$APP_SERVER" "${APP_SERVER_ADDR:-}")
[ -n "$NGINX_UPSTREAM_SERVERS" ] || fail "no socket of $APP_SERVER in $APP_SOCKET_ROOT/$APP_SERVER accepts a connection; nothing was changed"
export NGINX_UPSTREAM_SERVERS

# Render next to the live config and let nginx check it; only a config that passes replaces
# the live one and the files naming what it points at (follow-upstream.sh and `make swap` read
# them), so a bad value leaves a running nginx and that state as they were.
candidate=$(mktemp "$NGINX_RUN_DIR/nginx.conf.XXXXXX")
trap 'rm -f "$candidate"' EXIT
# Only these names are replaced; nginx's own $variables pass through untouched. The quotes
# are meant: envsubst, not the shell, reads the names.
# shellcheck disable=SC2016
sed "$quic" "$conf_dir/nginx.conf.template" | envsubst '$NGINX_CONF_DIR $NGINX_LISTEN $NGINX_RUN_DIR
    $NGINX_WORKER_PROCESSES $NGINX_ACCESS_LOG $NGINX_READ_TIMEOUT $NGINX_SERVER_NAMES $APP_SERVER
    $NGINX_UPSTREAM_SERVERS $STATIC_ROOT $MAX_BODY_MB $NGINX_TLS_LISTEN $NGINX_LISTEN_HTTP2 $TLS_CERT_FILE
    $TLS_KEY_FILE $HSTS_SECONDS $HTTPS_PORT $HTTPS_REDIRECT $ACME_ROOT $NGINX_HTTP_PORT_SUFFIX
    $NGINX_HTTPS_PORT_SUFFIX $NGINX_STATUS_LISTEN' >"$candidate"
nginx -e stderr -t -q -c "$candidate" || fail "the rendered config failed nginx -t (above); nothing was changed"
chmod 644 "$candidate"
mv "$candidate" "$NGINX_RUN_DIR/nginx.conf"
# What the config now points at, for follow-upstream.sh and for `make swap`.
echo "$APP_SERVER" >"$NGINX_RUN_DIR/app-server"
echo "${APP_SERVER_ADDR:-}" >"$NGINX_RUN_DIR/upstream"
echo "$NGINX_RUN_DIR/nginx.conf"
