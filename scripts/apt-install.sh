#!/usr/bin/env bash
# Installs Debian packages for the tests without starting their services:
# prometheus, alertmanager, containerd and etcd ship units that Debian's
# maintainer scripts would start on the host. A policy-rc.d that answers
# 101 ("action forbidden") stops that; it is removed again afterwards,
# unless one was there before.
set -euo pipefail
[ $# -gt 0 ] || exit 0
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  ours=1
fi
cleanup() { if [ "$ours" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
