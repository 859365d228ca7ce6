"""Throwaway certificates for the FTPS tests, made with the openssl CLI at
test time (no key is ever committed):

- a CA, a server certificate it signs (CN 127.0.0.1; SAN IP:127.0.0.1 and
  DNS:localhost; serverAuth) and a client certificate it signs (clientAuth);
- the server's key once more, encrypted (AES-256) under a passphrase kept in
  a file of its own (no trailing newline);
- a second, unrelated CA and a client certificate it signs: a certificate
  that must fail verification against the first CA.

    certs = make_certs(Path("/tmp/x"))
    certs.ca, certs.cert, certs.key, certs.client_cert, ...
"""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

SERVER_CN = "127.0.0.1"
CLIENT_CN = "ftpw-test-client"
OTHER_CLIENT_CN = "ftpw-stranger-client"
KEY_PASSWORD = "ftpw-key-pw-3b9e71"


@dataclasses.dataclass
class TlsCerts:
    dir: Path
    ca: Path                  # PEM CA certificate (the trust anchor for everything below but other_*)
    ca_key: Path
    cert: Path                # server certificate (127.0.0.1, localhost), signed by ca
    key: Path                 # its private key, in clear
    chain: Path               # cert followed by ca (a chain file)
    client_cert: Path         # client certificate signed by ca (CN ftpw-test-client)
    client_key: Path
    other_ca: Path            # an unrelated CA
    other_client_cert: Path   # a client certificate signed by other_ca (CN ftpw-stranger-client)
    other_client_key: Path
    encrypted_key: Path       # `key` encrypted with AES-256 under `key_password`
    key_password_file: Path   # holds key_password, no newline
    key_password: str = KEY_PASSWORD


def openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({r.returncode}):\n"
                           f"{r.stderr.decode(errors='replace')[-2000:]}")


def _key(d: Path, name: str) -> Path:
    p = d / name
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(p), cwd=d)
    p.chmod(0o600)
    return p


def _ca(d: Path, name: str, cn: str) -> tuple[Path, Path]:
    key = _key(d, f"{name}.key")
    cert = d / f"{name}.pem"
    openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "30", "-subj", f"/O=ftpwarden tests/CN={cn}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash", "-out", str(cert), cwd=d)
    return cert, key


def _leaf(d: Path, name: str, cn: str, ca: Path, ca_key: Path, ext: str) -> tuple[Path, Path]:
    key = _key(d, f"{name}.key")
    csr = d / f"{name}.csr"
    cert = d / f"{name}.pem"
    extfile = d / f"{name}.ext"
    extfile.write_text("basicConstraints=critical,CA:FALSE\n"
                       "authorityKeyIdentifier=keyid\n"
                       f"{ext}\n")
    openssl("req", "-new", "-key", str(key), "-subj", f"/O=ftpwarden tests/CN={cn}", "-out", str(csr), cwd=d)
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-sha256", "-days", "30", "-extfile", str(extfile), "-out", str(cert), cwd=d)
    csr.unlink()
    extfile.unlink()
    return cert, key


def make_certs(d: Path) -> TlsCerts:
    """Every file in `d` (made if missing); certificates 0644, keys 0600."""
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o755)
    ca, ca_key = _ca(d, "ca", "ftpwarden test CA")
    cert, key = _leaf(d, "server", SERVER_CN, ca, ca_key,
                      "keyUsage=critical,digitalSignature,keyEncipherment\n"
                      "extendedKeyUsage=serverAuth\n"
                      "subjectAltName=IP:127.0.0.1,DNS:localhost")
    client_cert, client_key = _leaf(d, "client", CLIENT_CN, ca, ca_key,
                                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth")
    other_ca, other_ca_key = _ca(d, "other-ca", "ftpwarden unrelated CA")
    other_client_cert, other_client_key = _leaf(d, "other-client", OTHER_CLIENT_CN, other_ca, other_ca_key,
                                                "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth")
    chain = d / "server-chain.pem"
    chain.write_bytes(cert.read_bytes() + ca.read_bytes())
    pw = d / "server-key.password"
    pw.write_text(KEY_PASSWORD)
    pw.chmod(0o600)
    enc = d / "server-encrypted.key"
    openssl("pkey", "-in", str(key), "-aes256", "-passout", f"file:{pw}", "-out", str(enc), cwd=d)
    enc.chmod(0o600)
    for p in (ca, cert, chain, client_cert, other_ca, other_client_cert):
        p.chmod(0o644)
    return TlsCerts(dir=d, ca=ca, ca_key=ca_key, cert=cert, key=key, chain=chain, client_cert=client_cert,
                    client_key=client_key, other_ca=other_ca, other_client_cert=other_client_cert,
                    other_client_key=other_client_key, encrypted_key=enc, key_password_file=pw)


if __name__ == "__main__":  # make a set by hand: tls_certs.py DIR
    import sys
    print(make_certs(Path(sys.argv[1])))
