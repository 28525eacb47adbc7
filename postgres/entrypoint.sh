#!/bin/sh
# Make the cluster on the volume on first start (owner POSTGRES_USER, the password from the compose
# secret, the database POSTGRES_DB), then exec postgres with the stack's config.
set -eu
fail() {
    echo "postgres/entrypoint.sh: $*" >&2
    exit 2
}
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${POSTGRES_DB:?POSTGRES_DB is required}"
password_file=${POSTGRES_PASSWORD_FILE:?POSTGRES_PASSWORD_FILE is required}
[ -s "$password_file" ] || fail "POSTGRES_PASSWORD_FILE: $password_file is missing or empty"
conf=$(dirname "$0")

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "postgres/entrypoint.sh: no cluster in $PGDATA; making one" >&2
    # Checksums catch silent corruption on disk; scram-sha-256 for every network connection.
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$password_file" \
        --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 --locale=C.UTF-8 --data-checksums
    # On the local socket only, to create the database; no network listener meanwhile.
    pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses='' -c unix_socket_directories=/tmp" --wait start
    createdb --host=/tmp --username="$POSTGRES_USER" "$POSTGRES_DB"
    pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop
fi
exec postgres -D "$PGDATA" -c config_file="$conf/postgresql.conf" -c hba_file="$conf/pg_hba.conf"
