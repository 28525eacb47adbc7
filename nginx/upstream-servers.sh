#!/bin/sh
# Prints the lines of nginx's upstream block that name the app server, for render.sh and
# follow-upstream.sh. APP_TRANSPORT=tcp: ADDR (host:port), whose every address nginx resolves
# into a server when it starts or reloads. unix: one line per replica, for each socket file in
# APP_SOCKET_ROOT/SERVER that accepts a connection; a replica killed before its clean-up leaves its
# file behind, refusing. Prints nothing when none answers.
# Usage: upstream-servers.sh SERVER ADDR
set -eu
case "$APP_TRANSPORT" in
tcp) echo "        server $2 max_fails=0;" ;;
unix)
    for socket in "$APP_SOCKET_ROOT/$1"/*.sock; do
        # A connect alone (-z sends nothing; neither server logs it), bounded by timeout.
        if [ -S "$socket" ] && timeout 2 nc -zU "$socket" 2>/dev/null; then
            echo "        server unix:$socket max_fails=0;"
        fi
    done
    ;;
*)
    echo "upstream-servers.sh: APP_TRANSPORT must be one of: unix, tcp (got '$APP_TRANSPORT')" >&2
    exit 2
    ;;
esac
