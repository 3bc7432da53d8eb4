"""Every SQLite catalog connection keeps a large page cache, and it never hides another process's write.

The cache (``PRAGMA cache_size``, :data:`indexer.store.catalog.SQLITE_CACHE_KIB`) keeps the
interior pages of the big tables between lookups. It is SQLite's own cache: a
connection drops it when another connection has committed (WAL), so a key revoked
or a row changed by another worker or by the CLI (here: another ``Catalog`` over the
same file) holds from the very next request, however warm the cache was.
"""

from __future__ import annotations

from pathlib import Path

from api.api_keys import authenticate, create_key, revoke_key
from indexer.store.catalog import SQLITE_CACHE_KIB, Catalog


def test_every_connection_has_the_large_page_cache(tmp_path: Path) -> None:
    catalog = Catalog.open(tmp_path)
    with catalog.engine.connect() as first, catalog.engine.connect() as second:
        for conn in (first, second):
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -SQLITE_CACHE_KIB


def test_a_key_revoked_by_another_process_is_refused_on_the_next_request(tmp_path: Path) -> None:
    server = Catalog.open(tmp_path)
    key = create_key(server, "partner", "partner-a")
    for _ in range(3):  # a warm cache: the key's pages are held by the server's connection
        principal = authenticate(server, key)
        assert principal is not None and principal.role == "partner"
    cli = Catalog.open(tmp_path)  # `reunite keys revoke` in another process
    assert revoke_key(cli, "partner-a")
    assert authenticate(server, key) is None
