#!/bin/sh
# Start gunicorn the same way in the container and in the tests: check the shared settings,
# prepare the database, then exec, so gunicorn is the process that receives the stop signal.
set -eu
cd "$(dirname "$0")/../app"
# It prints the address gunicorn.conf.py computes again.
python -m stack.server_env >/dev/null
python manage.py prepare_db
# Arguments go on gunicorn's command line after the shipped settings (the bench gives its own -c).
exec gunicorn -c ../gunicorn/gunicorn.conf.py "$@"
