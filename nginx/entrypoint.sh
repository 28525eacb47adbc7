#!/bin/sh
# Render the config from the environment and exec nginx in the foreground, in the container
# and in the tests alike. -e stderr: a non-root nginx cannot open the compiled-in log path.
# The follower reloads nginx when the app server's name points somewhere new; it gets this
# shell's pid, which exec hands to nginx. Should it ever exit while nginx runs, nginx would go
# on serving but stop following recreated and scaled containers: so it is started again, and
# the log says so.
set -eu
here=$(dirname "$0")
conf=$("$here/render.sh")
(
    while kill -0 $$ 2>/dev/null; do
        code=0
        "$here/follow-upstream.sh" $$ "$conf" || code=$?
        kill -0 $$ 2>/dev/null || break
        echo "entrypoint: follow-upstream.sh exited with $code while nginx runs; starting it again" >&2
        sleep 1
    done
) &
exec nginx -e stderr -c "$conf" -g 'daemon off;'
