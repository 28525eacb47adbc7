#!/bin/sh
# Render the config from the environment and exec nginx in the foreground, in the container
# and in the tests alike. -e stderr: a non-root nginx cannot open the compiled-in log path.
# The follower reloads nginx when the app server's name points somewhere new; it gets this
# shell's pid, which exec hands to nginx.
set -eu
here=$(dirname "$0")
conf=$("$here/render.sh")
"$here/follow-upstream.sh" $$ "$conf" &
exec nginx -e stderr -c "$conf" -g 'daemon off;'
