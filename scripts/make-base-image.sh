#!/usr/bin/env bash
# Builds debian:trixie-slim locally with debootstrap, for machines that cannot pull from a registry.
# Usage: scripts/make-base-image.sh [extra CA certificate dir]   (needs root, debootstrap and docker)
# With a CA dir, its *.crt files are trusted inside the image and PIP_CERT points pip at that bundle,
# which is what a TLS-re-signing proxy needs; without one the image is plain Debian.
set -euo pipefail

TAG="${BASE_IMAGE:-debian:trixie-slim}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_DIR="${1:-}"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "make-base-image: $TAG already exists (FORCE=1 rebuilds it)"
    exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

# minbase: essential packages and apt only, the same set the official slim image starts from.
debootstrap --variant=minbase trixie "$root" "$MIRROR"

# The official image's sources: the release, its point updates and the security archive.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# Slim: no docs, man pages or locales in layers built on top, as in the official slim image.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
# Images are built non-interactively and never need recommended packages.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* "$root"/usr/share/man/*

changes=(--change 'CMD ["bash"]')
if [ -n "$CA_DIR" ]; then
    # update-ca-certificates is not in minbase; appending PEMs to the bundle is what it would do.
    mkdir -p "$root/usr/local/share/ca-certificates"
    bundle="$root/etc/ssl/certs/ca-certificates.crt"
    mkdir -p "$(dirname "$bundle")"
    for crt in "$CA_DIR"/*.crt; do
        [ -e "$crt" ] || continue
        cp "$crt" "$root/usr/local/share/ca-certificates/"
        cat "$crt" >>"$bundle"
    done
    changes+=(--change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt")
    changes+=(--change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")
fi

# mktemp -d made the root 0700; the image's / must be 0755, or non-root processes cannot reach
# anything under a storage driver that shows it as it is (vfs, in the swarm lab's nodes).
chmod 755 "$root"
tar -C "$root" -c . | docker import "${changes[@]}" - "$TAG"
echo "make-base-image: built $TAG"
