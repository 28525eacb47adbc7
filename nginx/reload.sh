#!/bin/sh
# Point the running nginx at another app server (`make swap`): render the config from this
# environment (APP_SERVER, APP_SERVER_ADDR), check it, and reload gracefully. On reload the
# old workers finish the requests they hold, on the old config, while new workers take every
# new one. This waits (up to 30 s) until the old workers are gone, because until then they
# may still send to the old app server, which must not be stopped before.
set -eu
here=$(dirname "$0")
conf=$("$here/render.sh")
master=$(cat "$(dirname "$conf")/nginx.pid")

workers() {
    for stat in /proc/[0-9]*/stat; do
        # Field 4 of /proc/PID/stat is the parent's pid; follow-upstream.sh is a child too.
        dir=$(dirname "$stat")
        [ "$(cut -d ' ' -f 4 "$stat" 2>/dev/null)" = "$master" ] && [ "$(cat "$dir/comm" 2>/dev/null)" = nginx ] &&
            basename "$dir"
    done
    return 0
}

old=$(workers)
nginx -e stderr -t -q -c "$conf"
nginx -e stderr -c "$conf" -s reload
for _ in $(seq 1 300); do
    alive=""
    for pid in $old; do
        [ -d "/proc/$pid" ] && alive="$alive $pid"
    done
    [ -z "$alive" ] && exit 0
    sleep 0.1
done
echo "reload.sh: old nginx workers$alive still running after 30 s" >&2
