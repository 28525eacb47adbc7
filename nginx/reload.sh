#!/bin/sh
# Point the running nginx at another app server (`make swap`): render the config from this
# environment (APP_SERVER, APP_SERVER_ADDR; render.sh checks it before it replaces anything)
# and reload gracefully. On reload the old workers finish the requests they hold, on the old
# config, while new workers take every new one. This waits until the old workers are gone,
# because until then they may still send to the old app server, which must not be stopped
# before: up to NGINX_OLD_WORKERS_WAIT seconds (default: nginx's read timeout plus 5 s, the
# longest an old worker waits on a silent upstream), then exits 3 naming what still runs.
set -eu
here=$(dirname "$0")
conf=$("$here/render.sh")
master=$(cat "$(dirname "$conf")/nginx.pid")
wait_s=${NGINX_OLD_WORKERS_WAIT:-$((REQUEST_TIMEOUT + 10))}
case "$wait_s" in
'' | *[!0-9]*)
    echo "reload.sh: NGINX_OLD_WORKERS_WAIT must be a whole number of seconds, got '$wait_s'" >&2
    exit 2
    ;;
esac

workers() {
    for stat in /proc/[0-9]*/stat; do
        # Field 4 of /proc/PID/stat is the parent's pid; follow-upstream.sh is a child too. A
        # process may exit between the glob and the read: it is then simply not listed.
        dir=$(dirname "$stat")
        [ "$(cut -d ' ' -f 4 "$stat" 2>/dev/null)" = "$master" ] && [ "$(cat "$dir/comm" 2>/dev/null)" = nginx ] &&
            basename "$dir"
    done
    return 0
}

old=$(workers)
nginx -e stderr -c "$conf" -s reload
ticks=0
while :; do
    alive=""
    for pid in $old; do
        [ -d "/proc/$pid" ] && alive="$alive $pid"
    done
    [ -z "$alive" ] && exit 0
    [ "$ticks" -ge $((wait_s * 10)) ] && break
    ticks=$((ticks + 1))
    sleep 0.1
done
echo "reload.sh: nginx's old workers (pid$alive) still hold requests ${wait_s}s after the reload;" \
    "the previous app server may still get requests from them" >&2
exit 3
