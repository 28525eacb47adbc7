#!/bin/sh
# Keeps nginx's upstream on the app server's replicas as they come and go: every few seconds it
# lists them as nginx/upstream-servers.sh does and, when the list changes, rewrites the servers
# in the rendered config and reloads nginx gracefully. With APP_TRANSPORT=unix the list is the
# socket files that answer (`docker compose up --scale`, a recreated container, a killed one);
# with tcp it is the addresses the service name resolves to, since nginx 1.26 resolves a name
# only when it starts or reloads (the `resolve` server parameter arrived in 1.27.3). The server
# is re-read from the run dir each time, so it follows a swap. It also reloads nginx when the
# certificate or key file changes (an ACME client renewed them), after nginx/check-tls.sh passes
# them. Exits when nginx (pid $1) does.
# Usage: follow-upstream.sh NGINX_PID NGINX_CONF
set -eu
here=$(dirname "$0")
nginx_pid=$1
conf=$2
run_dir=$(dirname "$conf")
# Nothing listens here: while no replica answers, the upstream is parked on it, so nginx is
# refused at once and answers 503 instead of first waiting out a connect timeout to an address
# that is gone.
parked="        server 127.0.0.1:9 max_fails=0;"

# The upstream's server lines now, then (tcp) the addresses nginx would resolve the name to.
servers() {
    server=$(cat "$run_dir/app-server")
    upstream=$(cat "$run_dir/upstream")
    lines=$("$here/upstream-servers.sh" "$server" "$upstream" || true)
    addresses=""
    if [ "$APP_TRANSPORT" = tcp ]; then
        addresses=$(getent ahostsv4 "${upstream%:*}" | cut -d ' ' -f 1 | sort -u | tr '\n' ' ' || true)
        [ -n "$addresses" ] || lines=""
    fi
    echo "${lines:-$parked}"
    echo "# $addresses"
}

# Modification time and inode of both files, following symlinks (certbot's live/ points into archive/).
tls_files() { stat -L -c '%Y.%i' "$TLS_CERT_FILE" "$TLS_KEY_FILE" 2>/dev/null | tr '\n' ' ' || true; }

# render.sh (a swap) replaces the config under the same lock.
exec 9>"$run_dir/config.lock"
known=$(servers)
known_tls=$(tls_files)
while kill -0 "$nginx_pid" 2>/dev/null; do
    sleep "${UPSTREAM_RECHECK_SECONDS:-2}"
    current_tls=$(tls_files)
    if [ "$current_tls" != "$known_tls" ]; then
        # Once per change: a bad pair is reported (check-tls.sh names it) and nginx keeps the old one.
        known_tls=$current_tls
        "$here/check-tls.sh" "$TLS_CERT_FILE" "$TLS_KEY_FILE" &&
            echo "follow-upstream: $TLS_CERT_FILE or its key changed; reloading nginx" >&2 &&
            nginx -e stderr -c "$conf" -s reload || true
    fi
    flock 9
    current=$(servers)
    if [ "$current" != "$known" ]; then
        # The lines between the markers (nginx.conf.template) replaced, the file swapped in whole.
        lines=$(echo "$current" | grep -v '^#')
        awk -v servers="$lines" '/#servers-end/ { skip = 0 } !skip { print } /#servers-begin/ { print servers; skip = 1 }' \
            "$conf" >"$conf.next"
        mv "$conf.next" "$conf"
        echo "follow-upstream: the app server is now [$(echo "$current" | tr -s ' \n' ' ')] (was [$(echo "$known" | tr -s ' \n' ' ')]); reloading nginx" >&2
        nginx -e stderr -c "$conf" -s reload && known=$current
    fi
    flock -u 9
done
