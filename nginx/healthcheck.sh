#!/bin/bash
# Container healthcheck: nginx answers its own /nginx-health. bash's /dev/tcp, so the image
# needs no HTTP client.
set -euo pipefail
exec 3<>"/dev/tcp/127.0.0.1/${NGINX_LISTEN##*:}"
printf 'GET /nginx-health HTTP/1.0\r\nHost: health\r\n\r\n' >&3
read -r _ status _ <&3
[ "$status" = 200 ]
