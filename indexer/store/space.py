"""Recognising a full disk, whichever layer hit it first.

A write can fail for want of space in three shapes: ``OSError`` with ENOSPC
(or EDQUOT, EFBIG: a quota or a file-size limit) from a photo, index or report
file, and SQLite's "database or disk is full" (SQLITE_FULL) from the catalog,
wrapped by SQLAlchemy. Callers turn all of them into one answer (HTTP 507,
CLI exit 2) instead of a bare internal error; the writes themselves are atomic
(indexer.store.atomic, SQLite transactions), so nothing is stored half.
"""

from __future__ import annotations

import errno

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_FULL = "database or disk is full"


def storage_full(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the disk, a quota or a size limit is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if _SQLITE_FULL in str(current).lower():
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


STORAGE_FULL_DETAIL = "the data folder's disk is full; nothing was stored, free space and retry"
