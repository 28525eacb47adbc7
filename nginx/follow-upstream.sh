#!/bin/sh
# nginx 1.26 resolves the upstream's name only when it starts or reloads (the `resolve`
# server parameter arrived in 1.27.3). Compose gives a recreated or scaled app container a
# new address under the same name, so look the name up every few seconds and reload nginx
# gracefully when the set of addresses changes. The name is re-read from the run dir each
# time, so it follows a swap. It also reloads nginx when the certificate or key file changes
# (an ACME client renewed them), after nginx/check-tls.sh passes them. Exits when nginx
# (pid $1) does.
# Usage: follow-upstream.sh NGINX_PID NGINX_CONF
set -eu
nginx_pid=$1
conf=$2
run_dir=$(dirname "$conf")
# Nothing listens here: while no container answers to the name, the upstream is parked on it,
# so nginx is refused at once and answers 503 instead of first waiting out a connect timeout
# to an address that is gone.
parked=127.0.0.1:9

addresses() {
    upstream=$(cat "$run_dir/upstream")
    getent ahostsv4 "${upstream%:*}" | cut -d ' ' -f 1 | sort -u | tr '\n' ' ' || true
}

# Modification time and inode of both files, following symlinks (certbot's live/ points into archive/).
tls_files() { stat -L -c '%Y.%i' "$TLS_CERT_FILE" "$TLS_KEY_FILE" 2>/dev/null | tr '\n' ' ' || true; }

known=$(addresses)
known_tls=$(tls_files)
while kill -0 "$nginx_pid" 2>/dev/null; do
    sleep "${UPSTREAM_RECHECK_SECONDS:-2}"
    current_tls=$(tls_files)
    if [ "$current_tls" != "$known_tls" ]; then
        # Once per change: a bad pair is reported (check-tls.sh names it) and nginx keeps the old one.
        known_tls=$current_tls
        "$(dirname "$0")/check-tls.sh" "$TLS_CERT_FILE" "$TLS_KEY_FILE" &&
            echo "follow-upstream: $TLS_CERT_FILE or its key changed; reloading nginx" >&2 &&
            nginx -e stderr -c "$conf" -s reload || true
    fi
    current=$(addresses)
    [ "$current" != "$known" ] || continue
    upstream=$(cat "$run_dir/upstream")
    if [ -z "$current" ]; then
        sed -i "s|server $upstream max_fails=0;|server $parked max_fails=0;|" "$conf"
    else
        sed -i "s|server $parked max_fails=0;|server $upstream max_fails=0;|" "$conf"
    fi
    echo "follow-upstream: $upstream is now [${current:-no address, parked}] (was [$known]); reloading nginx" >&2
    nginx -e stderr -c "$conf" -s reload && known=$current
done
