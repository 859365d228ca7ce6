#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian 12 (as root).
# vsftpd conflicts in apt with other FTP servers a machine may carry (proftpd,
# for one), so it is unpacked under /opt/ftpsrv instead of installed.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: not root, assuming the packages are there" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build pkg-config git ca-certificates \
  libuv1-dev libspdlog-dev libtomlplusplus-dev libgtest-dev libbenchmark-dev libre2-dev \
  clang libclang-rt-14-dev \
  python3 python3-pytest python3-pyftpdlib python3-yaml curl lftp tnftp wget ncftp util-linux haproxy \
  iproute2 nftables rsyslog prometheus \
  libpam-modules libwrap0 libcap2 libssl3 passwd procps openssl python3-openssl libssl-dev \
  libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3 libacl1 libsodium23 >/dev/null
# The FTP servers of the client x server matrix, unpacked (never installed:
# they conflict with each other in apt and would start system services):
# /opt/ftpsrv/<name>/usr/sbin/<binary>.
unpack() {  # name package...
  local name=$1; shift
  [ -d "/opt/ftpsrv/$name/usr" ] && return 0
  mkdir -p "/opt/ftpsrv/$name" /opt/ftpsrv/dl
  (cd /opt/ftpsrv/dl && apt-get download "$@" >/dev/null 2>&1)
  for p in "$@"; do dpkg -x /opt/ftpsrv/dl/"${p}"_*.deb "/opt/ftpsrv/$name"; done
}
if ! command -v vsftpd >/dev/null && [ ! -x /usr/sbin/vsftpd ]; then unpack vsftpd vsftpd; fi
unpack proftpd proftpd-core
unpack pure-ftpd pure-ftpd pure-ftpd-common
