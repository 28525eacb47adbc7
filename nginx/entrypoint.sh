#!/bin/sh
# Render the config from the environment and exec nginx in the foreground, in the container
# and in the tests alike. -e stderr: a non-root nginx cannot open the compiled-in log path.
set -eu
conf=$("$(dirname "$0")/render.sh")
exec nginx -e stderr -c "$conf" -g 'daemon off;'
