#!/bin/sh
# nginx 1.26 resolves the upstream's name only when it starts or reloads (the `resolve`
# server parameter arrived in 1.27.3). Compose gives a recreated or scaled app container a
# new address under the same name, so look the name up every few seconds and reload nginx
# gracefully when the set of addresses changes. Exits when nginx (pid $1) does.
# Usage: follow-upstream.sh NGINX_PID NGINX_CONF HOST:PORT
set -eu
nginx_pid=$1
conf=$2
host=${3%:*}

addresses() {
    getent ahostsv4 "$host" | cut -d ' ' -f 1 | sort -u | tr '\n' ' ' || true
}

known=$(addresses)
while kill -0 "$nginx_pid" 2>/dev/null; do
    sleep "${UPSTREAM_RECHECK_SECONDS:-2}"
    current=$(addresses)
    # No address at all means the container is between lives; keep the last good config.
    if [ -n "$current" ] && [ "$current" != "$known" ]; then
        echo "follow-upstream: $host is now [$current] (was [$known]); reloading nginx" >&2
        nginx -e stderr -c "$conf" -s reload && known=$current
    fi
done
