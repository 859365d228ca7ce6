#!/usr/bin/env bash
# The quickstart: installs what is needed (Debian 12, root), builds ftpwarden,
# starts a real vsftpd and ftpwarden in front of it on loopback, runs a sample
# client session through the proxy (curl and python ftplib: a listing, a
# download, an upload, two out-of-sequence commands) and shows the audit log.
# Everything it starts is stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${FTPW_SKIP_APT:-}" ] || bash deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" >/dev/null
exec /usr/bin/python3 deploy/demo.py "${@}"
