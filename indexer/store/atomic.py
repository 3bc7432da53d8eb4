"""One way to write a file that survives a crash at any moment.

Temporary file in the same folder, fsync, rename over the target, fsync of the
folder: readers (and a process restarted after a kill) see the old file or the
new one, never half of one. Index files, local-feature indexes and stored
photos all go through here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_atomically(path: Path, payload: bytes | Iterable[bytes | memoryview],
                     mode: int | None = None) -> None:
    """Replace ``path`` with ``payload`` atomically and durably (``mode``: its permissions;
    default 0600, as ``mkstemp`` creates it). ``payload`` may be a sequence of pieces,
    so that a large index is written without first being joined into one copy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(payload, bytes | bytearray | memoryview):
                f.write(payload)
            else:
                for piece in payload:
                    f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
