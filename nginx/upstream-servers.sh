#!/bin/sh
# Prints the lines of nginx's upstream block that name the app server, for render.sh and
# follow-upstream.sh. APP_TRANSPORT=tcp: ADDR (host:port), whose every address nginx resolves
# into a server when it starts or reloads. unix: a line per socket file in APP_SOCKET_ROOT/SERVER
# of every replica with a socket that accepts a connection. A replica's sockets are <host>.sock
# (uWSGI's workers share it) or <host>.w<slot>.sock (a gunicorn worker's own). A gunicorn worker
# that is restarting refuses on its socket while its siblings accept (gunicorn/gunicorn.conf.py):
# it stays, and nginx goes to the next server. A replica killed before its clean-up leaves its
# files behind, all refusing: it is left out. Prints nothing when none answers.
# Usage: upstream-servers.sh SERVER ADDR
set -eu
case "$APP_TRANSPORT" in
tcp) echo "        server $2 max_fails=0;" ;;
unix)
    for socket in "$APP_SOCKET_ROOT/$1"/*.sock; do
        [ -S "$socket" ] || continue
        replica=${socket%.sock}
        replica=${replica%.w[0-9]*}
        for sibling in "$replica".sock "$replica".w[0-9]*.sock; do
            # A connect alone (-z sends nothing; neither server logs it), bounded by timeout.
            if [ -S "$sibling" ] && timeout 2 nc -zU "$sibling" 2>/dev/null; then
                echo "        server unix:$socket max_fails=0;"
                break
            fi
        done
    done
    ;;
*)
    echo "upstream-servers.sh: APP_TRANSPORT must be one of: unix, tcp (got '$APP_TRANSPORT')" >&2
    exit 2
    ;;
esac
