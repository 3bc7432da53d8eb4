"""Prepared DB-API statements: a hot path's SQL without SQLAlchemy's per-statement work.

Why: a hash lookup makes about a dozen small statements (the key, the banks, the
signals, the hits' owners, the subjects, the queue write, the audit append), and
on SQLite a Core statement cost ~150 µs of CPU where the same SQL on the DB-API
cursor costs ~12 µs (compile cache look-up, parameter processing, result
machinery; BENCHMARKS.md). So these few statements are written once as SQL text,
turned into the dialect's parameter style once, and run on the DB-API cursor of
the catalog connection the caller already holds (a unit's transaction inside
:meth:`indexer.store.catalog.Catalog.unit`), where both drivers keep them prepared
(sqlite3's statement cache, psycopg's automatic prepare).

Values cross with SQLAlchemy's own conversions for the dialect (the bind and result
processors of its DateTime, Date, JSON and Boolean types), so a row written here
reads the same through the ORM and the other way round, on SQLite and PostgreSQL.

Statement text uses ``:name`` parameters (sqlite3's named style; ``%(name)s`` for
psycopg) and ``{in:name}`` for "is one of the list ``name``": PostgreSQL gets
``= ANY(%(name)s)`` (one statement whatever the length), SQLite ``IN (:name_0, ...)``
padded to a power of two (a few statements in its cache; ``json_each`` cost 0.7 µs
more per id).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_IN = re.compile(r"\{in:(\w+)\}")
Processor = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _null_kept(processor: Processor) -> Processor:
    def process(value: Any) -> Any:
        return None if value is None else processor(value)

    return process


class Prepared:
    """The SQL texts and value conversions of one catalog's dialect (one per catalog)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error
        self.postgres = dialect.name == "postgresql"
        self._texts: dict[tuple[str, int], str] = {}
        self._names: dict[tuple[str, int], list[str]] = {}
        self._bind: dict[str, Processor] = {}
        self._result: dict[str, Processor] = {}
        for name, sa_type in (("json", JSON()), ("datetime", DateTime()), ("date", Date()),
                              ("bool", Boolean())):
            impl = dialect.type_descriptor(sa_type)
            self._bind[name] = impl.bind_processor(dialect) or _identity
            self._result[name] = impl.result_processor(dialect, None) or _identity

    def sql(self, text: str, width: int = 0) -> str:
        """``text`` in the driver's parameter style, its lists ``width`` long on SQLite (made once)."""
        key = (text, width)
        out = self._texts.get(key)
        if out is None:
            if self.postgres:
                out = _PARAM.sub(r"%(\1)s", _IN.sub(r"= ANY(:\1)", text))
            else:
                out = _IN.sub(lambda m: "IN (" + ", ".join(f":{m.group(1)}_{i}" for i in range(width)) + ")",
                              text)
            self._texts[key] = out
        return out

    def _with_lists(self, text: str, params: Mapping[str, Any] | None,
                    lists: Mapping[str, list[int]] | None) -> tuple[str, Mapping[str, Any]]:
        if not lists:
            return self.sql(text), params or {}
        merged = dict(params or {})
        if self.postgres:
            merged.update(lists)
            return self.sql(text), merged
        width = 8
        while width < max(len(v) for v in lists.values()):
            width *= 2
        for name, values in lists.items():  # padded with its first value: the same set
            merged.update(zip(self._list_names(name, width),
                              [*values, *[values[0]] * (width - len(values))], strict=True))
        return self.sql(text, width), merged

    def _list_names(self, name: str, width: int) -> list[str]:
        """The parameter names of list ``name`` at ``width`` (``name_0`` ...), made once: a hash
        lookup's owner read binds a hundred of them, and formatting each cost more than the bind."""
        key = (name, width)
        names = self._names.get(key)
        if names is None:
            names = self._names[key] = [f"{name}_{i}" for i in range(width)]
        return names

    def dump(self, kind: str, value: Any) -> Any:
        """A Python value as SQLAlchemy would bind it to a column of ``kind`` (json, datetime, date, bool)."""
        return self._bind[kind](value)  # None too: a JSON column stores JSON null, as SQLAlchemy does

    def load(self, kind: str, value: Any) -> Any:
        """A stored value of ``kind`` as SQLAlchemy would read it back."""
        return None if value is None else self._result[kind](value)

    def loader(self, kind: str) -> Processor:
        return self._result[kind]

    def column_loaders(self, columns: Iterable[Any]) -> list[Processor]:
        """SQLAlchemy's result processor of each of ``columns`` (a table's), for rows read here."""
        out = []
        for column in columns:
            processor = self.dialect.type_descriptor(column.type).result_processor(self.dialect, None)
            out.append(_null_kept(processor) if processor is not None else _identity)
        return out

    @contextmanager
    def cursor(self, conn: Connection) -> Iterator[Any]:
        """A DB-API cursor on ``conn``'s connection (its transaction), closed after the block."""
        cursor = conn.connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def rows(self, conn: Connection, text: str, params: Mapping[str, Any] | None = None,
             lists: Mapping[str, list[int]] | None = None) -> list[tuple]:
        """Every row of one SELECT, as the driver's tuples.

        ``lists``: the values of its ``{in:name}`` lists, each non-empty; the one list of a
        statement longer than :data:`MAX_LIST` is read in chunks (a statement binds a bounded
        number of values, and each padded width is one more statement in SQLite's cache).
        """
        if lists is not None and len(lists) == 1:
            [(name, values)] = lists.items()
            if len(values) > MAX_LIST:
                out: list[tuple] = []
                for start in range(0, len(values), MAX_LIST):
                    out.extend(self.rows(conn, text, params, {name: values[start:start + MAX_LIST]}))
                return out
        sql, bound = self._with_lists(text, params, lists)
        with self.cursor(conn) as cursor:
            self._execute(conn, cursor, sql, bound)
            return cursor.fetchall()

    def run(self, conn: Connection, text: str, params: Mapping[str, Any] | None = None,
            lists: Mapping[str, list[int]] | None = None) -> Any:
        """One statement: the first row when it returns any (INSERT ... RETURNING), else None."""
        sql, bound = self._with_lists(text, params, lists)
        with self.cursor(conn) as cursor:
            self._execute(conn, cursor, sql, bound)
            return cursor.fetchone() if cursor.description is not None else None

    def _execute(self, conn: Connection, cursor: Any, sql: str, params: Mapping[str, Any]) -> None:
        """Run one statement; a driver error is raised as SQLAlchemy raises it (IntegrityError,
        OperationalError, ... wrapping the driver's), so that callers catch one kind, and a lost
        connection is invalidated as SQLAlchemy would, so the pool does not hand it out again."""
        try:
            cursor.execute(sql, params)
        except self._driver_error as exc:
            lost = self.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
            if lost:
                conn.invalidate(exc)
            raise DBAPIError.instance(sql, params, exc, self._driver_error, dialect=self.dialect,
                                      connection_invalidated=lost) from exc


MAX_LIST = 512  # values of one {in:...} list per statement (SQLite binds at most 32,766 in all)
