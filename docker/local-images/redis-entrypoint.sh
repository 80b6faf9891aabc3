#!/bin/sh
# The official redis image's entrypoint, as far as compose uses it; plus protected mode off:
# Debian's redis-server starts in protected mode (no password: only loopback clients), while the
# official image is built with it off so other containers can connect.
set -eu
# `docker run redis --flag` or `docker run redis my.conf` means redis-server.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then
  shift
  conf=''
  if [ $# -gt 0 ] && [ "${1%.conf}" != "$1" ]; then conf="$1"; shift; fi
  # Options given later on the command line (the user's) override these.
  set -- redis-server ${conf:+"$conf"} --protected-mode no "$@"
  if [ "$(id -u)" = 0 ]; then
    chown -R redis:redis . 2>/dev/null || true
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi
exec "$@"
