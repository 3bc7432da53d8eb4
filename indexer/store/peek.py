"""Read-only answers from a data folder's SQLite catalog with the standard library alone.

Why: ``reunite banks`` and ``reunite keys list`` are what an operator types to
see where things stand, many times a day and from scripts. Opening the full
:class:`indexer.store.store.Store` imports SQLAlchemy, NumPy and FAISS and
checks the schema first, which costs more than a second before anything is
printed; these verbs only read a few rows. ``sqlite3`` opens the file
read-only (``mode=ro``: nothing is created, migrated or locked for writing),
and any surprise (no catalog yet, a schema from an older version, another
engine) is answered by ``None``, upon which the caller takes the full path.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BankSummary:
    """One bank as ``reunite banks`` prints it."""

    name: str
    kind: str
    items: int
    policy: dict[str, Any]


@dataclass(frozen=True)
class KeySummary:
    """One API key as ``reunite keys list`` prints it (never the key or its hash)."""

    name: str
    role: str
    revoked_at: str | None
    created_at: str | None = None
    last_used_at: str | None = None


def _missing(data_dir: Path) -> bool:
    """No catalog yet: nothing stored, so nothing to list (and nothing is created for asking)."""
    return not (Path(data_dir) / "catalog.sqlite").exists()


def _connect(data_dir: Path) -> sqlite3.Connection | None:
    path = Path(data_dir) / "catalog.sqlite"
    if not path.is_file():
        return None
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None


def _read(data_dir: Path, query: Callable[[sqlite3.Connection], list[tuple]],
          catalog_url: str | None = None) -> list[tuple] | None:
    """Rows of ``query`` on a read-only connection; [] without a catalog, None on any surprise.

    A catalog elsewhere (``--catalog-url``, e.g. PostgreSQL) is not this reader's: None.
    """
    if catalog_url:
        return None
    if _missing(data_dir):
        return []
    conn = _connect(data_dir)
    if conn is None:
        return None
    try:
        with closing(conn):
            return query(conn)
    except sqlite3.Error:  # a schema this reader does not know: let the full catalog migrate it
        return None


def banks(data_dir: Path, catalog_url: str | None = None) -> list[BankSummary] | None:
    """Every bank with its item count, by name; None when the catalog must be opened in full."""
    rows = _read(data_dir, lambda conn: conn.execute(
        "SELECT b.name, b.kind, b.policy, (SELECT COUNT(*) FROM items i WHERE i.bank_id = b.id) "
        "FROM banks b ORDER BY b.name").fetchall(), catalog_url)
    if rows is None:
        return None
    out = []
    for name, kind, policy, items in rows:
        try:
            parsed = json.loads(policy) if policy else {}
        except ValueError:
            return None
        out.append(BankSummary(str(name), str(kind), int(items), parsed if isinstance(parsed, dict) else {}))
    return out


def _key_rows(conn: sqlite3.Connection) -> list[tuple]:
    table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'api_keys'").fetchone()
    if table is None:
        return []  # no key was ever issued in this folder
    # A catalog from before last_used_at (0004) raises here: the full path migrates it first.
    return conn.execute("SELECT name, role, revoked_at, created_at, last_used_at FROM api_keys ORDER BY id"
                        ).fetchall()


def api_keys(data_dir: Path, catalog_url: str | None = None) -> list[KeySummary] | None:
    """Every issued key by id; None when the catalog must be opened in full."""
    rows = _read(data_dir, _key_rows, catalog_url)
    if rows is None:
        return None
    return [KeySummary(str(n), str(r), _text(rev), _text(made), _text(used))
            for n, r, rev, made, used in rows]


def _text(value: object) -> str | None:
    return None if value is None else str(value)
