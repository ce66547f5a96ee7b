"""The snapshot file: a checksummed header naming what the KV belongs to, then the tensors.

Layout (all integers little-endian)::

    MAGIC (8 bytes) | header length (u64) | header (UTF-8 JSON) | payload (safetensors bytes) | SHA-256 (32 bytes)

The digest covers everything before it, so a flipped byte anywhere or a truncated file is refused
before any of it is used: a snapshot is loaded whole or not at all. The header says which model,
KV dtype and layout the keys and values were written by, and the plugin version; ``check_compatible``
refuses any other (a stream's KV is meaningless under another model or layout). Tensors go through
safetensors, not pickle: loading a file never runs code from it.

Writes are atomic: a temporary file in the same directory, fsynced, then ``os.replace`` and an fsync
of the directory, so a kill at any point leaves the old file or none, never a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

MAGIC = b"HERMSNP1"
FORMAT_VERSION = 1
SUFFIX = ".hsnap"
DIGEST_BYTES = 32
# Fields of the header that must equal the loading server's own (model, KV dtype and layout, plugin).
IDENTITY_FIELDS = ("model", "dtype", "layout", "plugin_version")


class SnapshotError(ValueError):
    """A snapshot that cannot be loaded here; the message says why (corrupt, or written by something else)."""


def encode(header: dict, tensors: dict[str, torch.Tensor]) -> bytes:
    head = json.dumps({"format": FORMAT_VERSION, **header}, sort_keys=True).encode()
    payload = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    body = MAGIC + struct.pack("<Q", len(head)) + head + payload
    return body + hashlib.sha256(body).digest()


def decode(data: bytes, what: str = "snapshot") -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, tensors) of a whole file's bytes; SnapshotError if it is not an intact snapshot."""
    if len(data) < len(MAGIC) + 8 + DIGEST_BYTES or not data.startswith(MAGIC):
        raise SnapshotError(f"{what} is not a hermes snapshot (bad magic or too short: {len(data)} bytes)")
    body, digest = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotError(f"{what} is corrupt or truncated (checksum mismatch); it was not loaded")
    (head_len,) = struct.unpack_from("<Q", body, len(MAGIC))
    start = len(MAGIC) + 8
    try:
        header = json.loads(body[start:start + head_len])
        tensors = st_load(bytes(body[start + head_len:]))
    except (ValueError, UnicodeDecodeError) as e:  # safetensors raises its own SafetensorError(Exception)
        raise SnapshotError(f"{what} is malformed ({e})") from None
    except Exception as e:
        raise SnapshotError(f"{what} is malformed ({type(e).__name__}: {e})") from None
    if header.get("format") != FORMAT_VERSION:
        raise SnapshotError(f"{what} has format {header.get('format')!r}; this server reads format {FORMAT_VERSION}")
    return header, tensors


def check_compatible(header: dict, here: dict, what: str = "snapshot") -> None:
    """Refuse a snapshot whose model, dtype, layout or plugin version differ from this server's (``here``)."""
    for key in IDENTITY_FIELDS:
        if header.get(key) != here.get(key):
            raise SnapshotError(f"{what} was written with {key}={header.get(key)!r}; this server has "
                                f"{key}={here.get(key)!r}: a stream's memory only loads into the same model, "
                                f"KV dtype, layout and plugin version")


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once (temp file in the same directory, fsync, rename, fsync dir)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(path: str | os.PathLike, header: dict, tensors: dict[str, torch.Tensor]) -> int:
    """Write a snapshot atomically; returns its size in bytes."""
    data = encode(header, tensors)
    write_atomic(path, data)
    return len(data)


def load(path: str | os.PathLike, here: dict | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and verify a snapshot; with ``here``, also refuse one written for another model/dtype/layout."""
    what = f"snapshot {Path(path).name}"
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SnapshotError(f"{what} does not exist") from None
    header, tensors = decode(data, what)
    if here is not None:
        check_compatible(header, here, what)
    return header, tensors

