"""The client side of the client x server matrix (test_matrix.py): each real
client runs the session it can (login, PWD, CWD, LIST and MLSD where it does
them, a binary download, a binary upload, a resumed download, a rename, a
delete, MKD/RMD, QUIT) inside one pair directory, and every byte is checked.

A Pair names the directory on the server (relative to the login directory),
a local work directory, and whether the data connections are passive."""
from __future__ import annotations

import dataclasses
import ftplib
import hashlib
import io
import shlex
import subprocess
from pathlib import Path

from clients import Target, curl, lftp, tnftp

TIMEOUT = 60

# What every pair directory holds before the client starts (name -> size),
# and what the clients send.
DOWN, RESUME, RENAME_FROM, RENAME_TO, UPLOAD, NEWDIR = (
    "down.bin", "resume.bin", "ren-a.txt", "ren-b.txt", "up.bin", "newdir")
RESUME_HAVE = 48 * 1024  # bytes of resume.bin the client already has


@dataclasses.dataclass
class Pair:
    remote: str       # pair directory, relative to the login directory
    server_dir: Path  # the same directory on the server's disk
    local: Path       # the client's working directory
    passive: bool
    files: dict       # name -> bytes, as placed on the server
    upload: bytes     # what the client uploads as up.bin

    def expect_download(self, name: str, path: Path) -> None:
        got = path.read_bytes()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(self.files[name]).hexdigest(), \
            f"{name}: {len(got)} bytes, not the server's {len(self.files[name])}"

    def prepare_local(self) -> None:
        (self.local / UPLOAD).write_bytes(self.upload)
        (self.local / RESUME).write_bytes(self.files[RESUME][:RESUME_HAVE])


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{what} failed ({r.returncode}): {shlex.join(cmd)}\n"
                             f"{r.stdout.decode(errors='replace')[-1500:]}\n{r.stderr.decode(errors='replace')[-2500:]}")
    return r


# ---------------------------------------------------------------- python ftplib

def ftplib_session(t: Target, p: Pair) -> set[str]:
    f = ftplib.FTP()
    f.connect(t.host, t.port, timeout=TIMEOUT)
    f.login(t.user, t.password)
    f.set_pasv(p.passive)
    f.pwd()
    f.cwd(p.remote)
    lines: list[str] = []
    f.retrlines("LIST", lines.append)
    assert any(DOWN in l for l in lines), lines
    features = f.sendcmd("FEAT")
    if "MLSD" in features.upper():
        assert DOWN in [name for name, _ in f.mlsd()]
    buf = io.BytesIO()
    f.retrbinary(f"RETR {DOWN}", buf.write)
    (p.local / DOWN).write_bytes(buf.getvalue())
    f.storbinary(f"STOR {UPLOAD}", io.BytesIO(p.upload))
    buf = io.BytesIO(p.files[RESUME][:RESUME_HAVE])
    buf.seek(0, io.SEEK_END)
    f.retrbinary(f"RETR {RESUME}", buf.write, rest=RESUME_HAVE)
    (p.local / RESUME).write_bytes(buf.getvalue())
    f.rename(RENAME_FROM, RENAME_TO)
    f.delete(RENAME_TO)
    f.mkd(NEWDIR)
    f.rmd(NEWDIR)
    f.quit()
    return {"download", "upload", "resume", "rename", "delete", "mkd"}


# ---------------------------------------------------------------- curl

def curl_session(t: Target, p: Pair) -> set[str]:
    mode = "epsv" if p.passive else "eprt"
    base = p.remote.rstrip("/") + "/"
    listing = curl(t, base, mode=mode).stdout.decode(errors="replace")
    assert DOWN in listing, listing
    curl(t, base + DOWN, "-o", str(p.local / DOWN), mode=mode)
    curl(t, base + UPLOAD, "-T", str(p.local / UPLOAD), mode=mode)
    curl(t, base + RESUME, "-C", "-", "-o", str(p.local / RESUME), mode=mode)
    # quote commands (sent before curl changes directory) around a listing:
    # rename, delete, MKD and RMD
    curl(t, base, "--list-only", "-Q", f"RNFR {base}{RENAME_FROM}", "-Q", f"RNTO {base}{RENAME_TO}",
         "-Q", f"DELE {base}{RENAME_TO}", "-Q", f"MKD {base}{NEWDIR}", "-Q", f"RMD {base}{NEWDIR}", mode=mode)
    return {"download", "upload", "resume", "rename", "delete", "mkd"}


# ---------------------------------------------------------------- lftp

def lftp_session(t: Target, p: Pair) -> set[str]:
    script = (f"lcd {p.local}; cd {p.remote}; pwd; ls; cls -1; get {DOWN}; put {UPLOAD}; get -c {RESUME}; "
              f"mv {RENAME_FROM} {RENAME_TO}; rm {RENAME_TO}; mkdir {NEWDIR}; rmdir {NEWDIR}")
    lftp(t, script, passive=p.passive, timeout=TIMEOUT)
    return {"download", "upload", "resume", "rename", "delete", "mkd"}


def lftp_mirror_session(t: Target, p: Pair) -> set[str]:
    """mirror -R: a local tree uploaded whole (MKD, listings, STORs)."""
    tree = p.local / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / UPLOAD).write_bytes(p.upload)
    (tree / "sub" / "second.bin").write_bytes(p.upload[::-1])
    lftp(t, f"cd {p.remote}; mirror -R {tree} mirrored", passive=p.passive, timeout=TIMEOUT)
    got = p.server_dir / "mirrored"
    assert (got / UPLOAD).read_bytes() == p.upload
    assert (got / "sub" / "second.bin").read_bytes() == p.upload[::-1]
    return {"mirror"}


# ---------------------------------------------------------------- tnftp

def tnftp_session(t: Target, p: Pair) -> set[str]:
    script = "\n".join([
        "binary", f"lcd {p.local}", "pwd", f"cd {p.remote}", "ls", f"get {DOWN}", f"put {UPLOAD}",
        f"reget {RESUME}", f"rename {RENAME_FROM} {RENAME_TO}", f"delete {RENAME_TO}",
        f"mkdir {NEWDIR}", f"rmdir {NEWDIR}"])
    out = tnftp(t, script, passive=p.passive, timeout=TIMEOUT)
    assert DOWN in out
    return {"download", "upload", "resume", "rename", "delete", "mkd"}


# ---------------------------------------------------------------- wget

def wget_session(t: Target, p: Pair) -> set[str]:
    """wget downloads only: a listing, a file, a resumed file."""
    url = f"ftp://{t.user}:{t.password}@{t.host}:{t.port}/{p.remote.rstrip('/')}"
    mode = [] if p.passive else ["--no-passive-ftp"]
    common = ["wget", "-q", "--tries=1", f"--timeout={TIMEOUT}", *mode]
    run([*common, "--no-remove-listing", "-O", str(p.local / "index.html"), url + "/"], "wget listing", cwd=p.local)
    assert DOWN in (p.local / "index.html").read_text(errors="replace")
    run([*common, "-O", str(p.local / DOWN), f"{url}/{DOWN}"], "wget get", cwd=p.local)
    run([*common, "-c", f"{url}/{RESUME}"], "wget -c", cwd=p.local)
    return {"download", "resume"}


# ---------------------------------------------------------------- ncftp

def ncftp_session(t: Target, p: Pair) -> set[str]:
    """ncftpls, ncftpget (resuming an existing file), ncftpput; raw commands
    (-W) for rename, delete, MKD and RMD."""
    auth = ["-u", t.user, "-p", t.password, "-P", str(t.port), "-t", str(TIMEOUT), "-r", "0"]
    data = ["-F"] if p.passive else ["-E"]
    listing = run(["ncftpls", *auth, *data, "-l", f"ftp://{t.host}/{p.remote}/"], "ncftpls").stdout.decode(
        errors="replace")
    assert DOWN in listing, listing
    run(["ncftpget", *auth, *data, "-V", t.host, str(p.local), f"{p.remote}/{DOWN}"], "ncftpget")
    run(["ncftpget", *auth, *data, "-V", "-z", t.host, str(p.local), f"{p.remote}/{RESUME}"], "ncftpget -z")
    run(["ncftpput", *auth, *data, "-V",
         "-W", f"RNFR {p.remote}/{RENAME_FROM}", "-W", f"RNTO {p.remote}/{RENAME_TO}",
         "-W", f"DELE {p.remote}/{RENAME_TO}", "-W", f"MKD {p.remote}/{NEWDIR}", "-W", f"RMD {p.remote}/{NEWDIR}",
         t.host, p.remote, str(p.local / UPLOAD)], "ncftpput")
    return {"download", "upload", "resume", "rename", "delete", "mkd"}


CLIENTS = {
    "ftplib": ftplib_session,
    "curl": curl_session,
    "lftp": lftp_session,
    "lftp-mirror": lftp_mirror_session,
    "tnftp": tnftp_session,
    "wget": wget_session,
    "ncftp": ncftp_session,
}


def check_results(p: Pair, did: set[str]) -> None:
    """What the session left on both sides, byte for byte."""
    if "download" in did:
        p.expect_download(DOWN, p.local / DOWN)
    if "resume" in did:
        p.expect_download(RESUME, p.local / RESUME)
    if "upload" in did:
        assert (p.server_dir / UPLOAD).read_bytes() == p.upload, "upload not byte-exact"
    if "rename" in did:
        assert not (p.server_dir / RENAME_FROM).exists()
    if "delete" in did:
        assert not (p.server_dir / RENAME_TO).exists()
    if "mkd" in did:
        assert not (p.server_dir / NEWDIR).exists()



def masked(line: str) -> str:
    """A command as compared between the proxy's log and the server's: PASS
    and ACCT arguments masked (each side masks its own way), the verb in
    upper case, data addresses reduced to their verb (the proxy rewrites
    them)."""
    verb, _, arg = line.partition(" ")
    verb = verb.upper()
    if verb in ("PASS", "ACCT", "PORT", "EPRT", "LPRT"):
        return verb
    return f"{verb} {arg}".rstrip()

