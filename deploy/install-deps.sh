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
  libuv1-dev libspdlog-dev libtomlplusplus-dev libgtest-dev libbenchmark-dev \
  clang libclang-rt-14-dev \
  python3 python3-pytest python3-pyftpdlib curl lftp tnftp libpam-modules libwrap0 libcap2 libssl3 passwd procps >/dev/null
if ! command -v vsftpd >/dev/null && [ ! -x /usr/sbin/vsftpd ] && [ ! -x /opt/ftpsrv/vsftpd/usr/sbin/vsftpd ]; then
  mkdir -p /opt/ftpsrv
  (cd /opt/ftpsrv && apt-get download vsftpd >/dev/null 2>&1 && mkdir -p vsftpd && dpkg -x vsftpd_*.deb vsftpd)
fi
