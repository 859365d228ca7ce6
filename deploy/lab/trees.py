"""File trees for the servers to serve, and their checksums."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def populate_tree(root: Path, seed: int = 1) -> dict[str, str]:
    """The standard test files; returns {relative path: sha256}."""
    rnd = random.Random(seed)
    files = {
        "small.txt": b"ftpwarden small test file\nsecond line\n",
        "blob.bin": rnd.randbytes(1 << 20),
        "tree/a.txt": b"tree a\n",
        "tree/b.bin": rnd.randbytes(70_000),
        "tree/sub/c.txt": b"tree sub c\n",
        "tree/sub/deeper/d.bin": rnd.randbytes(5_000),
        "tree/empty.txt": b"",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "upload").mkdir(exist_ok=True)
    return {rel: sha256_bytes(data) for rel, data in files.items()}
