#!/usr/bin/env bash
# The quickstart: installs what is needed (Debian 12, root), builds ftpwarden,
# starts a real vsftpd and a real pyftpdlib with ftpwarden in front of each on
# loopback, runs sample client sessions through the proxies (curl and python
# ftplib: a listing, a download, an upload, two out-of-sequence commands; a
# download over a data connection the server reuses, answered 125; an FTPS
# download, TLS to the proxy and plain FTP to vsftpd), shows the
# audit logs and ends with a summary that points into them.
# Everything it starts is stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${FTPW_SKIP_APT:-}" ] || bash deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" >/dev/null
exec /usr/bin/python3 deploy/demo.py "${@}"
