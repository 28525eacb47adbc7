#!/bin/sh
# Start uWSGI the same way in the container and in the tests. uWSGI leaves an unset $(VAR)
# as literal text, so the shared settings are checked first, then exec: uWSGI gets the signals.
set -eu
cd "$(dirname "$0")/../app"
python -m stack.server_env
python manage.py prepare_db
exec uwsgi --ini ../uwsgi/uwsgi.ini
