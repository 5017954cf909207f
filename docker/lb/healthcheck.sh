#!/bin/bash
# Docker HEALTHCHECK of the balancer: haproxy's own monitor URI answers 200
# (without asking a renderer). bash's /dev/tcp: the image has no HTTP client.
set -euo pipefail
port=${ZEOD_INIT_LB__LISTEN_PORT:-8080}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /lb-health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 3 status <&3
[[ $status == "HTTP/1."?" 200 "* ]]
