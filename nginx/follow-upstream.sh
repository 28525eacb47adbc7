#!/bin/sh
# nginx 1.26 resolves the upstream's name only when it starts or reloads (the `resolve`
# server parameter arrived in 1.27.3). Compose gives a recreated or scaled app container a
# new address under the same name, so look the name up every few seconds and reload nginx
# gracefully when the set of addresses changes. The name is re-read from the run dir each
# time, so it follows a swap. Exits when nginx (pid $1) does.
# Usage: follow-upstream.sh NGINX_PID NGINX_CONF
set -eu
nginx_pid=$1
conf=$2
run_dir=$(dirname "$conf")

addresses() {
    upstream=$(cat "$run_dir/upstream")
    getent ahostsv4 "${upstream%:*}" | cut -d ' ' -f 1 | sort -u | tr '\n' ' ' || true
}

known=$(addresses)
while kill -0 "$nginx_pid" 2>/dev/null; do
    sleep "${UPSTREAM_RECHECK_SECONDS:-2}"
    current=$(addresses)
    # No address at all means the container is between lives; keep the last good config.
    if [ -n "$current" ] && [ "$current" != "$known" ]; then
        echo "follow-upstream: $(cat "$run_dir/upstream") is now [$current] (was [$known]); reloading nginx" >&2
        nginx -e stderr -c "$conf" -s reload && known=$current
    fi
done
