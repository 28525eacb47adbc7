#!/bin/sh
# Point the running nginx at another app server (`make swap`): render the config from this
# environment (APP_SERVER, APP_SERVER_ADDR), check it, and reload gracefully. On reload the
# old workers finish their in-flight requests while new workers take every new one.
set -eu
here=$(dirname "$0")
conf=$("$here/render.sh")
nginx -e stderr -t -q -c "$conf"
nginx -e stderr -c "$conf" -s reload
