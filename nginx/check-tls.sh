#!/bin/sh
# Check nginx's certificate and key before nginx loads them, naming the file and the problem:
# nginx's own errors ("PEM_read_bio_X509_AUX() failed") name neither plainly. Exits 2 on a file
# nginx cannot use or must not serve (missing, unreadable, not PEM, encrypted, expired, or a key
# that is not the certificate's); warns on a certificate that does not name a host in
# ALLOWED_HOSTS or expires within 14 days. render.sh runs it, so every start and reload does.
# Usage: check-tls.sh CERT_FILE KEY_FILE
set -eu
cert=$1
key=$2
fail() {
    echo "nginx/check-tls.sh: $*" >&2
    exit 2
}
warn() { echo "nginx/check-tls.sh: warning: $*" >&2; }

for pair in "TLS_CERT_FILE=$cert" "TLS_KEY_FILE=$key"; do
    name=${pair%%=*}
    file=${pair#*=}
    if [ ! -e "$file" ]; then
        [ -x "$(dirname "$file")" ] || fail "$name: $file cannot be reached by uid $(id -u): its directory is not searchable"
        fail "$name: $file does not exist"
    fi
    [ -f "$file" ] || fail "$name: $file is not a regular file"
    [ -r "$file" ] || fail "$name: $file is not readable by uid $(id -u), which nginx runs as"
done
openssl x509 -in "$cert" -noout 2>/dev/null || fail "TLS_CERT_FILE: $cert is not a PEM certificate"
# An empty pass phrase: an encrypted key fails here instead of prompting.
openssl pkey -in "$key" -passin pass: -noout 2>/dev/null ||
    fail "TLS_KEY_FILE: $key is not an unencrypted PEM private key (nginx cannot ask for a pass phrase)"
openssl x509 -in "$cert" -noout -checkend 0 >/dev/null ||
    fail "TLS_CERT_FILE: $cert expired on $(openssl x509 -in "$cert" -noout -enddate | cut -d = -f 2)"
[ "$(openssl x509 -in "$cert" -noout -pubkey)" = "$(openssl pkey -in "$key" -passin pass: -pubout)" ] ||
    fail "TLS_KEY_FILE: $key is not the key of the certificate $cert (their public keys differ)"

openssl x509 -in "$cert" -noout -checkend $((14 * 86400)) >/dev/null ||
    warn "$cert expires on $(openssl x509 -in "$cert" -noout -enddate | cut -d = -f 2): renew it"
for host in $(echo "${ALLOWED_HOSTS:-}" | tr ',' ' '); do
    case "$host" in
    *[!0-9.]*) check=-checkhost ;;
    *) check=-checkip ;;
    esac
    openssl x509 -in "$cert" -noout "$check" "$host" | grep -q "does match" ||
        warn "$cert does not name $host (ALLOWED_HOSTS): browsers will refuse https://$host/"
done
