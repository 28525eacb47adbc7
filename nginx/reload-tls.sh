#!/bin/sh
# Load new certificate files into the running nginx (`make tls-reload`, or an ACME client's
# deploy hook): check them first, then reload gracefully. On reload nginx's old workers finish
# the requests and connections they hold; new ones get the new certificate. The config itself
# is not rendered again, so a swapped app server stays swapped. follow-upstream.sh does the
# same by itself when the files change.
set -eu
here=$(dirname "$0")
"$here/check-tls.sh" "$TLS_CERT_FILE" "$TLS_KEY_FILE"
nginx -e stderr -c "${NGINX_RUN_DIR:-/tmp/nginx}/nginx.conf" -s reload
echo "reload-tls.sh: nginx reloaded with $TLS_CERT_FILE (expires $(openssl x509 -in "$TLS_CERT_FILE" -noout -enddate | cut -d = -f 2))"
