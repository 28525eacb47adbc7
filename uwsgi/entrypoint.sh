#!/bin/sh
# Start uWSGI the same way in the container and in the tests. uWSGI leaves an unset $(VAR)
# as literal text, so the shared settings are checked first. supervise.py gets the signals:
# it turns SIGTERM into "serve the listen queue, then stop gracefully" (see its docstring).
set -eu
cd "$(dirname "$0")/../app"
# It prints where to listen (a socket path or host:port), for uwsgi.ini's socket option.
APP_LISTEN=$(python -m stack.server_env)
export APP_LISTEN
python manage.py prepare_db
# The worker model's file: stack.server_env has checked APP_WORKER_MODEL is threads or gevent.
set -- --ini ../uwsgi/uwsgi.ini --ini "../uwsgi/model-$APP_WORKER_MODEL.ini"
# METRICS_BIND set (stack.server_env has checked it): the metrics listener and the stats server.
if [ -n "${METRICS_BIND:-}" ]; then
    set -- "$@" --ini ../uwsgi/metrics.ini
fi
exec python ../uwsgi/supervise.py uwsgi "$@"
