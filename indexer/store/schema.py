"""Schema migrations of the catalog: every open brings it to this release's schema, or refuses.

Why automatic: a data folder (or a PostgreSQL database) is opened by every
``reunite`` command and by every API worker; an operator who upgrades the
package should not have to remember a separate step before the first command
works, and 0.1.0 already upgraded its catalog on open (additive columns only).
So :class:`indexer.store.catalog.Catalog` calls :func:`migrate` when it opens,
and ``reunite migrate`` runs the same step on its own and says where the
catalog stands (for a deployment that upgrades the database before it rolls
out new workers).

The revisions are Alembic scripts in :mod:`indexer.store.migrations`; the
version is the ``alembic_version`` table. Rules:

- a catalog at this release's head is opened with one query and nothing else, and
  without importing Alembic (with Mako and its dialect modules, 0.15-0.3 s of every
  command's start): the head is read from the revision files' ``revision`` /
  ``down_revision`` lines (:func:`head`), the catalog's from ``alembic_version``;
  Alembic is imported only to upgrade, or where the files cannot be read that way;
- a new SQLite catalog (an empty file: every first run on a fresh data folder) gets the
  head's schema in one transaction from :data:`SQLITE_SNAPSHOT`, the statements the
  revisions produce, and is stamped at head, without importing Alembic (0.2-1.5 s of the
  first run's start, issue 21); a snapshot of another revision than the head is not
  used (the revisions run instead), and tests/test_migrations.py pins that the snapshot
  makes exactly the schema the revisions make;
- an older one (including one of 0.1.0, which has no version table: the
  baseline adopts it) is upgraded in place, under a lock so that two processes
  opening it at once upgrade it once: an ``flock`` beside a SQLite file, a
  transaction-scoped advisory lock on PostgreSQL (whose DDL is transactional,
  so a failed upgrade leaves nothing half done);
- a catalog at a revision this release does not know was upgraded by a newer
  release: it is refused (:class:`CatalogTooNew`) and nothing is touched,
  because an older release writing rows of a newer schema could lose data.
"""

from __future__ import annotations

import ast
import fcntl
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:  # Alembic is imported where a catalog is upgraded, not by every open
    from alembic.config import Config
    from alembic.script import ScriptDirectory

SCRIPT_LOCATION = "indexer.store:migrations"
VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"
VERSION_TABLE = "alembic_version"
# A new SQLite catalog's schema at head, as the revisions make it (sqlite_master's statements,
# written by `python -m indexer.store.schema --sqlite-snapshot`; tests/test_migrations.py pins it).
SQLITE_SNAPSHOT = Path(__file__).resolve().parent / "migrations" / "sqlite_head.sql"
SNAPSHOT_REVISION = "-- revision: "
# pg_advisory_xact_lock key of the schema step ("reun" in ASCII); any other constant would do.
PG_SCHEMA_LOCK = 0x7265756E
PRIVATE_MODE = 0o600


# Every module that declares tables on indexer.store.catalog.Base (for autogenerate and the drift test).
MODEL_MODULES = (
    "indexer.store.catalog", "indexer.store.annotations", "indexer.scene.storage",
    "api.api_keys", "api.audit", "api.web.sessions",
    "matcher.review.queue", "matcher.review.cases", "matcher.review.outbox", "matcher.search.watch",
    "matcher.networks.store", "matcher.privacy.ledger",
)


class CatalogTooNew(RuntimeError):
    """The catalog was upgraded by a newer release; this one must not write to it."""


def declared_metadata():  # noqa: ANN201 - sqlalchemy.MetaData
    """The schema the code declares, with every table-declaring module imported.

    Not used to create anything (the revisions do that): ``alembic revision
    --autogenerate`` diffs it against a catalog, and tests/test_migrations.py
    checks that a migrated catalog equals it, so a model changed without a
    revision fails the suite.
    """
    for name in MODEL_MODULES:
        importlib.import_module(name)
    from indexer.store.catalog import Base
    return Base.metadata


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code (there is no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


@lru_cache(maxsize=1)
def revision_graph() -> dict[str, tuple[str, ...]] | None:
    """{revision: the revisions it revises} read from the revision files' module-level
    ``revision = ...`` / ``down_revision = ...`` assignments, without importing them or Alembic.

    None when a file does not state both as literals (Alembic's own reading is then used):
    tests/test_migrations.py pins that this graph's head is Alembic's.
    """
    graph: dict[str, tuple[str, ...]] = {}
    for path in sorted(VERSIONS.glob("*.py")):
        if path.name.startswith("__"):
            continue
        found: dict[str, object] = {}
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in tree.body:
                target = node.target if isinstance(node, ast.AnnAssign) else (
                    node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") \
                        and node.value is not None:
                    found[target.id] = ast.literal_eval(node.value)
        except (OSError, SyntaxError, ValueError):
            return None
        revision, down = found.get("revision"), found.get("down_revision", ...)
        if not isinstance(revision, str) or down is ... or revision in graph:
            return None
        downs = () if down is None else (down,) if isinstance(down, str) else down
        if not isinstance(downs, tuple) or not all(isinstance(d, str) for d in downs):
            return None
        graph[revision] = downs
    return graph or None


def head() -> str:
    """This release's newest revision."""
    graph = revision_graph()
    if graph is not None:
        revised = {d for downs in graph.values() for d in downs}
        heads = sorted(r for r in graph if r not in revised)
    else:
        heads = list(_scripts().get_heads())
    if len(heads) != 1:
        raise RuntimeError(f"the catalog migrations have {len(heads)} heads: merge them")
    return heads[0]


def known(revision: str) -> bool:
    graph = revision_graph()
    if graph is not None:
        return revision in graph
    try:
        return _scripts().get_revision(revision) is not None
    except Exception:  # alembic raises its own ResolutionError / CommandError for unknown ids
        return False


def current(connection: Connection) -> str | None:
    """The revision stored in the catalog; None for a new one or one of 0.1.0 (no version table)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def stored_revisions(connection: Connection) -> list[str] | None:
    """The rows of the catalog's version table (None: it has none), with plain SQL: no Alembic."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return [str(r) for r in connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()]


def _refuse_newer(revision: str | None) -> None:
    if revision is not None and not known(revision):
        raise CatalogTooNew(
            f"the catalog is at schema revision {revision}, which this release of reunite does not "
            f"know (it knows up to {head()}): a newer release upgraded it; run that release "
            "(nothing was changed)")


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring the catalog to :func:`head`; returns (revision before, revision after)."""
    target = head()
    with engine.connect() as conn:
        stored = stored_revisions(conn)
        if stored == [target]:  # up to date: the common case, no Alembic import
            return target, target
        fresh = stored is None and _empty_sqlite(conn)
    if fresh and _create_from_snapshot(engine, target):  # a new SQLite file: no Alembic either
        return None, target
    with engine.connect() as conn:
        if fresh and stored_revisions(conn) == [target]:  # another process made it meanwhile
            return target, target
        before = current(conn)
    if before == target:
        return before, target
    _refuse_newer(before)
    with _schema_lock(engine) as conn:
        before = current(conn)  # another process may have upgraded it while this one waited
        _refuse_newer(before)
        if before != target:
            from alembic import command

            command.upgrade(config(conn), "head")
    return before, target


def _empty_sqlite(conn: Connection) -> bool:
    """Whether ``conn`` is a SQLite catalog holding no table at all (a new file)."""
    if conn.dialect.name != "sqlite":
        return False
    return not conn.exec_driver_sql("SELECT 1 FROM sqlite_master LIMIT 1").first()


@lru_cache(maxsize=1)
def sqlite_snapshot() -> tuple[str | None, tuple[str, ...]]:
    """(revision, statements) of :data:`SQLITE_SNAPSHOT`; (None, ()) when it cannot be read."""
    try:
        text_ = SQLITE_SNAPSHOT.read_text(encoding="utf-8")
    except OSError:
        return None, ()
    first, _, body = text_.partition("\n")
    if not first.startswith(SNAPSHOT_REVISION):
        return None, ()
    statements = tuple(part.strip() for part in body.split(";\n--\n") if part.strip())
    return first[len(SNAPSHOT_REVISION):].strip(), statements


def _create_from_snapshot(engine: Engine, target: str) -> bool:
    """Make a new SQLite catalog's schema from the snapshot in one transaction, stamped at
    ``target`` with a fresh identity (what revision 0002 inserts); False (nothing done) when
    the snapshot is not of ``target`` or the file is no longer empty (another process made it)."""
    import secrets
    import sqlite3

    revision, statements = sqlite_snapshot()
    if revision != target or not statements:
        return False
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    with _file_lock(engine):
        conn = sqlite3.connect(database, isolation_level=None, timeout=30.0)
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock first, then look again
            try:
                if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                    conn.execute("ROLLBACK")
                    return False
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (?)", (target,))
                conn.execute("INSERT INTO catalog_meta (name, value) VALUES ('catalog_id', ?)",
                             (secrets.token_hex(16),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()
    return True


def snapshot_statements(url: str) -> list[str]:
    """The schema statements of the SQLite catalog at ``url``, in the order SQLite keeps them."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [str(sql) for (sql,) in conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                "ORDER BY rowid")]
    finally:
        engine.dispose()


def write_sqlite_snapshot(path: Path = SQLITE_SNAPSHOT) -> None:
    """Write the snapshot: a new catalog made by the revisions (Alembic), its statements dumped."""
    import tempfile

    from sqlalchemy import create_engine

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'catalog.sqlite'}"
        engine = create_engine(url)
        try:
            with _schema_lock(engine) as conn:
                from alembic import command

                command.upgrade(config(conn), "head")
        finally:
            engine.dispose()
        statements = snapshot_statements(url)
    path.write_text(f"{SNAPSHOT_REVISION}{head()}\n" + "".join(f"{sql};\n--\n" for sql in statements),
                    encoding="utf-8")


def autogenerate(url: str, message: str, rev_id: str) -> None:
    """Write the next revision: what the models declare and the catalog at ``url`` (at head) lacks.

    For developers who add a table or a column::

        python -m indexer.store.schema --url sqlite:////tmp/d/catalog.sqlite --id 0004 "what it adds"

    (open a fresh folder first so that its catalog is at the current head), then read and
    tidy the file Alembic writes into indexer/store/migrations/versions/.
    """
    from alembic import command
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = config(conn)
            cfg.attributes["autogenerate"] = True
            command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
    finally:
        engine.dispose()


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the catalog's schema lock until it commits."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_SCHEMA_LOCK})
            yield conn
        return
    with _file_lock(engine), engine.begin() as conn:
        yield conn


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive ``flock`` on a private file beside a SQLite catalog (none for :memory:).

    pysqlite runs each CREATE TABLE in its own implicit transaction, so two
    processes upgrading one new file at once would interleave table by table;
    the lock serialises them, and is released when the file closes, also when
    a process dies.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".schema-lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, PRIVATE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write the next catalog revision (autogenerate) or "
                                                 "(--sqlite-snapshot) a new SQLite catalog's schema.")
    parser.add_argument("--sqlite-snapshot", action="store_true",
                        help=f"rewrite {SQLITE_SNAPSHOT.name} from the revisions (after adding one)")
    parser.add_argument("--url", help="a catalog at the current head")
    parser.add_argument("--id", help="the new revision's id, e.g. 0004")
    parser.add_argument("message", nargs="?")
    args = parser.parse_args()
    if args.sqlite_snapshot:
        write_sqlite_snapshot()
    elif not (args.url and args.id and args.message):
        parser.error("--url, --id and a message are needed to write a revision")
    else:
        autogenerate(args.url, args.message, args.id)
