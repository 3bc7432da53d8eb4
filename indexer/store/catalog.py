"""The catalog: the source of truth for banks, subjects, items and their vectors.

Everything a vector index holds can be rebuilt from here, so the indexes are a
cache that may be lost or stale without losing data. The catalog speaks
SQLAlchemy 2: a SQLite file in the data folder by default (WAL mode so that the
service can read while a batch job writes), or PostgreSQL by URL (psycopg 3;
the suite runs the catalog's tests on both). Its schema is made and upgraded by
the Alembic revisions of :mod:`indexer.store.schema` on every open.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    make_transient_to_detached,
    mapped_column,
    relationship,
    sessionmaker,
)

from indexer.store.prepared import Prepared
from indexer.store.schema import migrate

BANK_KINDS = ("ads", "venue", "missing_person", "hashes")
# Enrolled references keep no file path (a path can name the person): see indexer.enroll.
REFERENCE_SOURCE = "manifest"
SCRUBBED_KINDS = ("missing_person",)  # paths of venue crawls name places, not people: kept
KEPT_REFERENCE_SOURCES = ("", "http", REFERENCE_SOURCE)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Shared declarative base: other packages add their tables to the same catalog."""

    type_annotation_map = {dict[str, Any]: JSON}


class Bank(Base):
    """A named collection of references or crawled ads, with its policy."""

    __tablename__ = "banks"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    # Per-bank overrides: thresholds, retention, visibility, encryption.
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Subject(Base):
    """What a set of images shows: a missing person, a venue or an ad.

    ``label`` is the caller's identifier (ad id, venue id, case label) and
    ``pseudonym`` the opaque id shown to roles that may not see it. Personal
    fields live in ``personal``, which the service encrypts for missing persons.
    """

    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("bank_id", "label"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(300))
    pseudonym: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_pseudonym())
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    personal: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    consent_expires: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # Coarse end of the minors' regime (1 January after the 18th birthday), in clear so that the
    # matcher needs no key to apply it; why that is safe enough: matcher/privacy/minors.py.
    protected_until: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    bank: Mapped[Bank] = relationship()


class Item(Base):
    """One stored image of a bank, unique by content (sha256) within the bank."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("bank_id", "sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), index=True, nullable=True
    )
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(2000), default="")
    width: Mapped[int] = mapped_column(Integer, default=0)
    height: Mapped[int] = mapped_column(Integer, default=0)
    format: Mapped[str] = mapped_column(String(16), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    subject: Mapped[Subject | None] = relationship()


class Vector(Base):
    """One signal vector of one item; its ``id`` is its id in the vector index."""

    __tablename__ = "vectors"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    bank_id: Mapped[int] = mapped_column(Integer, index=True)
    signal: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    box: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class IndexRevision(Base):
    """A counter per (bank, signal) bumped by every change of its vectors.

    A saved index records the revision it was built at; one that is older than
    the catalog's is stale and gets rebuilt.
    """

    __tablename__ = "index_revisions"
    bank_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signal: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)


class CatalogMeta(Base):
    """Facts about the catalog itself: ``catalog_id``, its random identity (revision 0002)."""

    __tablename__ = "catalog_meta"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


# The unit of work open in this thread / task, per catalog (Catalog.unit); None outside one.
_UNIT: ContextVar[dict[int, Session] | None] = ContextVar("reunite_catalog_unit", default=None)


class FolderOfAnotherCatalog(RuntimeError):
    """The data folder was used with another catalog; its indexes and photos are not this one's."""


FOLDER_CATALOG_ID = "catalog-id"


def new_pseudonym() -> str:
    return "S-" + secrets.token_hex(8)


def with_driver(url: str) -> str:
    """``postgresql://...`` means psycopg 3 here (SQLAlchemy's own default is psycopg2, not installed)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'catalog.sqlite'}"


class Catalog:
    """Typed access to the catalog tables; one instance per process."""

    def __init__(self, url: str) -> None:
        url = with_driver(url)
        self.url = url
        if url.startswith("sqlite"):
            _make_sqlite_file_private(url)
        self.engine: Engine = create_engine(url, future=True)
        # The hot path's statements on the DB-API cursor (indexer.store.prepared).
        self.prepared = Prepared(self.engine.dialect)
        self._subject_loaders: list[Any] | None = None
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # indexer.store.schema: to this release's schema, or CatalogTooNew; what it was, for `reunite migrate`
        self.schema_before, _ = migrate(self.engine)
        scrub_reference_sources(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._sessions, "do_orm_execute", _note_write)
        event.listen(self._sessions, "after_flush", _note_flush)

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None) -> Catalog:
        """The catalog of ``data_dir``: ``url``, or the SQLite file in it; refuses a folder of another."""
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        if url is None and (Path(data_dir) / FOLDER_CATALOG_ID).exists() \
                and not (Path(data_dir) / "catalog.sqlite").exists():
            raise FolderOfAnotherCatalog(
                f"the data folder {data_dir} belongs to a catalog elsewhere (it holds no catalog.sqlite): "
                "give that catalog's --catalog-url or $REUNITE_CATALOG_URL")
        catalog = cls(url or sqlite_url(Path(data_dir)))
        try:
            bind_folder(Path(data_dir), catalog.identity())
        except FolderOfAnotherCatalog:
            catalog.engine.dispose()
            raise
        return catalog

    def identity(self) -> str:
        """The random id the migrations gave this catalog (the same on every open, in every process)."""
        with self.session() as s:
            value = s.scalar(select(CatalogMeta.value).where(CatalogMeta.name == "catalog_id"))
        if not value:
            raise RuntimeError("the catalog has no identity (catalog_meta.catalog_id): restore it")
        return str(value)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error.

        Inside :meth:`unit` this is the unit's session: what a block writes is
        still committed when the block ends (and rolled back if it fails), as
        outside one; a block that only read commits nothing, so a run of reads
        costs one connection and one transaction instead of one each.
        """
        shared = (_UNIT.get() or {}).get(id(self))
        if shared is not None:
            yield from _in_unit(self, shared)
            return
        with self._sessions() as session, self._committed(session):
            yield session

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for Core reads: the unit's transaction inside :meth:`unit`, else its own.

        Why: a hot path (a hash lookup) reads a few columns with prebuilt Core
        statements; through an ORM session each read paid the ORM's result
        machinery and a session's begin and commit, more than the query itself.
        Nothing written through it is committed: use :meth:`writing` to write.
        """
        shared = (_UNIT.get() or {}).get(id(self))
        if shared is not None:
            yield shared.connection()
            return
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A connection for Core writes, committed when the block ends, rolled back if it fails.

        Inside :meth:`unit` it is the unit's transaction, committed at the block's
        end as a :meth:`session` block that wrote would be.
        """
        if (_UNIT.get() or {}).get(id(self)) is not None:
            with self.session() as s:
                s.info["wrote"] = True  # statements on the connection: Catalog.session commits them
                yield s.connection()
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def unit(self) -> Iterator[Session]:
        """One session for every :meth:`session` block run inside (same thread or task).

        Why: a hash lookup reads the banks, the index revisions, the hits'
        items and subjects, consent and the minors' regime, each rule in its own
        module through its own ``session()`` block; a session per block was half
        of a lookup's time (BENCHMARKS.md). The rules keep their blocks and their
        queries; only the connection and transaction are shared. Nested units
        are one unit.
        """
        units = _UNIT.get() or {}
        if id(self) in units:
            yield units[id(self)]
            return
        with self._sessions() as session:
            token = _UNIT.set({**units, id(self): session})
            try:
                with self._committed(session):
                    yield session
            finally:
                _UNIT.reset(token)

    @contextmanager
    def _committed(self, session: Session) -> Iterator[None]:
        """Commit what the block wrote (bumping touched banks' revisions) or roll it all back.

        The one place that ends a transaction, so that :meth:`session` and
        :meth:`unit` cannot drift apart on what a successful block commits.
        """
        try:
            yield
            self._bump_touched(session)
            session.commit()
        except BaseException:
            session.rollback()
            raise

    def _reads(self) -> dict[tuple[int, str], int] | None:
        """Revisions already read in the open unit (None outside one): one query per bank, not two."""
        shared = (_UNIT.get() or {}).get(id(self))
        return None if shared is None else shared.info.setdefault("revisions_read", {})

    # banks -----------------------------------------------------------------
    def bank(self, name: str) -> Bank | None:
        with self.session() as s:
            return s.scalar(select(Bank).where(Bank.name == name))

    def banks(self) -> list[Bank]:
        """Every bank, by name, read anew on every call (a policy change holds on the next request).

        Read with one prepared statement (:mod:`indexer.store.prepared`) and made into
        detached rows (as a closed session's would be): every partner lookup asks, and
        an ORM session's load of the few bank rows cost as much as the rest of the
        lookup's reads.
        """
        prep = self.prepared
        with self.reading() as conn:
            rows = prep.rows(conn, _BANK_SQL)
        out = []
        for bank_id, name, kind, policy, created_at in rows:
            bank = Bank(id=bank_id, name=name, kind=kind, policy=prep.load("json", policy),
                        created_at=prep.load("datetime", created_at))
            make_transient_to_detached(bank)  # persistent's identity: a later session updates, not inserts
            out.append(bank)
        return out

    def ensure_bank(self, name: str, kind: str, policy: dict[str, Any] | None = None) -> Bank:
        """The bank called ``name``, created with ``kind`` if it does not exist.

        Asking for an existing bank with another kind is an error: silently
        indexing ads into a missing-person bank would be a privacy incident.
        """
        if kind not in BANK_KINDS:
            raise ValueError(f"unknown bank kind {kind!r} (one of {', '.join(BANK_KINDS)})")
        name = name.strip()
        if not name or len(name) > 120:
            raise ValueError("a bank name must be 1 to 120 characters")
        try:
            return self._ensure_bank(name, kind, policy)
        except IntegrityError:  # another process created it meanwhile: take that one
            return self._ensure_bank(name, kind, policy)

    def _ensure_bank(self, name: str, kind: str, policy: dict[str, Any] | None) -> Bank:
        with self.session() as s:
            bank = s.scalar(select(Bank).where(Bank.name == name))
            if bank is None:
                bank = Bank(name=name, kind=kind, policy=policy or {})
                s.add(bank)
                s.flush()
            elif bank.kind != kind:
                raise ValueError(f"bank {name!r} already exists with kind {bank.kind!r}, not {kind!r}")
            return bank

    # subjects and items ----------------------------------------------------
    def subject_by_label(self, s: Session, bank_id: int, label: str) -> Subject | None:
        return s.scalar(select(Subject).where(Subject.bank_id == bank_id, Subject.label == label))

    def ensure_subject(self, s: Session, bank_id: int, label: str, **fields: Any) -> Subject:
        subject = self.subject_by_label(s, bank_id, label)
        if subject is None:
            subject = Subject(bank_id=bank_id, label=label, **fields)
            s.add(subject)
            s.flush()
        return subject

    def item_by_sha(self, s: Session, bank_id: int, sha256: str) -> Item | None:
        return s.scalar(select(Item).where(Item.bank_id == bank_id, Item.sha256 == sha256))

    def known_sha256(self, bank_id: int) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(Item.sha256).where(Item.bank_id == bank_id)))

    def items_by_sha(self, sha256: str, bank_ids: Iterable[int]) -> list[Item]:
        if not sha256:  # a hash-only lookup that sent no SHA-256: no row has an empty one
            return []
        with self.session() as s:
            rows = s.scalars(
                select(Item).where(Item.sha256 == sha256, Item.bank_id.in_(list(bank_ids)))
            )
            return list(rows)

    def subjects(self, s: Session, subject_ids: Iterable[int]) -> dict[int, Subject]:
        """The subject rows of ``subject_ids`` (missing ones left out), in one query at most.

        Rows ``s`` already holds are taken as they are: in a :meth:`unit` the
        searcher has just read the hits' subjects, and consent and the minors'
        regime are then checked on those rows (read in this same request)
        instead of reading them twice more.
        """
        out: dict[int, Subject] = {}
        missing = []
        # The session's identity map holds rows weakly: the searcher's subjects were gone by the
        # time consent and the minors' regime asked, and were read three times. A unit keeps the
        # rows it read until it ends or commits a write (one transaction: the same rows).
        read = s.info.setdefault(_SUBJECTS_READ, {}) if (_UNIT.get() or {}).get(id(self)) is s else None
        for sid in sorted(set(subject_ids)):
            held = read.get(sid) if read is not None else None
            if held is None and s.identity_map:
                held = s.identity_map.get(s.identity_key(Subject, sid))
            if held is not None:
                out[sid] = held
            else:
                missing.append(sid)
        if missing and (s.new or s.dirty or s.deleted):
            s.flush()  # what an ORM query would autoflush first: the rows as this session sees them
        # A Core read made into detached rows: an ORM load of a subject (its JSON, its
        # relationship, the identity map) cost more than the rest of a lookup's reads.
        if missing:
            loaders = self._subject_loaders
            if loaders is None:
                loaders = self._subject_loaders = self.prepared.column_loaders(Subject.__table__.columns)
            for row in self.prepared.rows(s.connection(), _SUBJECT_SQL, lists={"ids": missing}):
                subject = Subject(**{name: load(value) for name, load, value
                                     in zip(_SUBJECT_COLUMNS, loaders, row, strict=True)})
                make_transient_to_detached(subject)
                out[subject.id] = subject
        if read is not None:
            read.update(out)
        return out

    def add_vectors(self, s: Session, item: Item, vectors: Iterable[Any], flush: bool = True) -> list[Vector]:
        """Store signal vectors of ``item`` and bump the revisions they touch.

        ``flush=False`` leaves the insert (and the rows' ids) to the caller's next
        flush, so that a batch of images is inserted at once.

        Revisions are bumped once per (bank, signal) when the session commits;
        the old and new values are then in ``s.info['revisions_before']`` and
        ``s.info['revisions']`` so that the caller can update an in-memory index.
        """
        rows = []
        touched: set[str] = set()
        for ordinal, v in enumerate(vectors):
            rows.append(Vector(
                item_id=item.id, bank_id=item.bank_id, signal=v.signal,
                data=v.vector.tobytes(), quality=v.quality,
                box=list(v.box) if v.box is not None else None,
                extra={**v.extra, "ordinal": ordinal},
            ))
            touched.add(v.signal)
        s.add_all(rows)
        if flush:
            s.flush()
        pending = s.info.setdefault("touched", set())
        pending.update((item.bank_id, signal) for signal in touched)
        return rows

    def _bump_touched(self, s: Session) -> None:
        """Bump each (bank, signal) revision once per transaction, however many
        vectors it added (one UPDATE per signal instead of one per image)."""
        for bank_id, signal in sorted(s.info.pop("touched", set())):
            self.bump_revision(s, bank_id, signal)

    def count_items(self, bank_id: int) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count(Item.id)).where(Item.bank_id == bank_id)) or 0)

    def count_vectors(self, bank_id: int, signal: str) -> int:
        with self.session() as s:
            q = select(func.count(Vector.id)).where(Vector.bank_id == bank_id, Vector.signal == signal)
            return int(s.scalar(q) or 0)

    def signals_in_bank(self, bank_id: int) -> list[str]:
        """Signals with at least one vector in the bank.

        Asked on every query, so it must not scan the bank's vectors (a DISTINCT
        over them took 8-14 ms at 1,000 references): the revision rows name every
        signal the bank ever held, and one EXISTS each tells which still has vectors.
        """
        with self.reading() as conn:
            rows = self.prepared.rows(conn, _SIGNALS_SQL, {"bank_id": bank_id})
        reads = self._reads()
        if reads is not None:  # the revisions come with the signals: Catalog.revision asks no more
            reads.update(((bank_id, str(signal)), int(rev or 0)) for signal, rev, _held in rows)
        return sorted(str(signal) for signal, rev, held in rows if (rev or 0) > 0 and held)

    def iter_vectors(self, bank_id: int, signal: str, batch: int = 10_000
                     ) -> Iterator[list[tuple[int, bytes]]]:
        """All (vector id, bytes) of a (bank, signal), in batches, for rebuilding an index."""
        last = 0
        while True:
            with self.session() as s:
                rows = s.execute(
                    select(Vector.id, Vector.data)
                    .where(Vector.bank_id == bank_id, Vector.signal == signal, Vector.id > last)
                    .order_by(Vector.id).limit(batch)
                ).all()
            if not rows:
                return
            yield [(int(r[0]), bytes(r[1])) for r in rows]
            last = int(rows[-1][0])

    def iter_owned_vectors(self, bank_id: int, signal: str, batch: int = 10_000
                           ) -> Iterator[list[tuple[int, bytes, int, float | None, int | None]]]:
        """All (vector id, bytes, item id, quality, item's subject id) of a (bank, signal), in
        batches by id: a rebuild of an index that keeps its vectors' owners (indexer.store.mih)."""
        last = 0
        while True:
            with self.session() as s:
                rows = s.execute(
                    select(Vector.id, Vector.data, Vector.item_id, Vector.quality, Item.subject_id)
                    .join(Item, Item.id == Vector.item_id)
                    .where(Vector.bank_id == bank_id, Vector.signal == signal, Vector.id > last)
                    .order_by(Vector.id).limit(batch)
                ).all()
            if not rows:
                return
            yield [(int(v), bytes(data), int(item), None if q is None else float(q),
                    None if sid is None else int(sid)) for v, data, item, q, sid in rows]
            last = int(rows[-1][0])

    def vector_owner_rows(self, vector_ids: Iterable[int]) -> list[tuple[int, int, float | None, int | None]]:
        """(vector id, item id, stored quality, item's subject id) of each of ``vector_ids`` that exists.

        The hash searcher's read of its nearest hits' owners, a hundred rows per
        lookup: a prepared statement on the DB-API cursor of the :meth:`reading`
        connection (the unit's transaction inside one), because SQLAlchemy's per-row
        result processing and the re-rendering of an expanding IN cost more than the query.
        """
        ids = [int(i) for i in vector_ids]
        if not ids:
            return []
        with self.reading() as conn:
            rows = self.prepared.rows(conn, _OWNER_SQL, lists={"ids": ids})
        if not self.prepared.postgres:  # sqlite3 returns these columns as int, float and None already
            return rows
        return [(int(v), int(i), None if q is None else float(q), None if sid is None else int(sid))
                for v, i, q, sid in rows]

    def vector_owners(self, vector_ids: Iterable[int]) -> dict[int, tuple[Vector, Item, Subject | None]]:
        """Map vector ids (as returned by an index) to their vector, item and subject."""
        ids = [int(i) for i in vector_ids]
        if not ids:
            return {}
        out: dict[int, tuple[Vector, Item, Subject | None]] = {}
        with self.session() as s:
            for chunk_start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
                chunk = ids[chunk_start:chunk_start + 900]
                q = (select(Vector, Item, Subject)
                     .join(Item, Item.id == Vector.item_id)
                     .outerjoin(Subject, Subject.id == Item.subject_id)
                     .where(Vector.id.in_(chunk)))
                for vec, item, subject in s.execute(q):
                    out[vec.id] = (vec, item, subject)
        return out

    # revisions -------------------------------------------------------------
    def bump_revision(self, s: Session, bank_id: int, signal: str) -> int:
        """Increase the (bank, signal) revision; returns the new value.

        One prepared ``UPDATE ... RETURNING`` on the session's connection: a batch of a
        crawl bumps every signal it touched, and the ORM's UPDATE then SELECT were 1.2 ms
        a bump (8 a batch). Nothing reads revision rows as ORM objects, so the session
        holds none that this could leave stale.
        """
        row = self.prepared.run(s.connection(), _BUMP_SQL, {"bank_id": bank_id, "signal": signal})
        if row is None:  # the first vectors of this (bank, signal)
            s.add(IndexRevision(bank_id=bank_id, signal=signal, revision=1))
            s.flush()
            rev = 1
        else:
            rev = int(row[0])
        s.info.setdefault("revisions_before", {}).setdefault((bank_id, signal), rev - 1)
        s.info.setdefault("revisions", {})[(bank_id, signal)] = rev
        return rev

    def revision(self, bank_id: int, signal: str) -> int:
        reads = self._reads()
        if reads is not None and (bank_id, signal) in reads:
            return reads[(bank_id, signal)]
        with self.session() as s:
            rev = s.scalar(select(IndexRevision.revision).where(
                IndexRevision.bank_id == bank_id, IndexRevision.signal == signal))
            return int(rev or 0)

    # deletion --------------------------------------------------------------
    def delete_items(self, s: Session, item_ids: list[int]) -> dict[str, list[int]]:
        """Delete items and their vectors; returns the removed vector ids per signal."""
        if not item_ids:
            return {}
        removed: dict[str, list[int]] = {}
        rows = s.execute(select(Vector.id, Vector.signal, Vector.bank_id)
                         .where(Vector.item_id.in_(item_ids))).all()
        for vid, signal, _bank_id in rows:
            removed.setdefault(signal, []).append(int(vid))
        banks = {int(b) for _v, _s, b in rows}
        for bank_id in banks:
            for signal in {sig for _v, sig, b in rows if b == bank_id}:
                self.bump_revision(s, bank_id, signal)
        s.execute(delete(Vector).where(Vector.item_id.in_(item_ids)))
        s.execute(delete(Item).where(Item.id.in_(item_ids)))
        return removed


# The hot path's statements (indexer.store.prepared: plain SQL, the same in SQLite and PostgreSQL).
# Catalog.vector_owner_rows: each hit's item, quality and subject.
_OWNER_SQL = (f"SELECT v.id, v.item_id, v.quality, i.subject_id FROM {Vector.__tablename__} v "
              f"JOIN {Item.__tablename__} i ON i.id = v.item_id WHERE v.id {{in:ids}}")
# Catalog.subjects: every column of the table.
_SUBJECT_COLUMNS = tuple(c.name for c in Subject.__table__.columns)
_SUBJECT_SQL = f"SELECT {', '.join(_SUBJECT_COLUMNS)} FROM {Subject.__tablename__} WHERE id {{in:ids}}"
_BANK_SQL = f"SELECT id, name, kind, policy, created_at FROM {Bank.__tablename__} ORDER BY name"
# Every revision row of a bank with whether its signal still has vectors (Catalog.signals_in_bank).
_BUMP_SQL = (f"UPDATE {IndexRevision.__tablename__} SET revision = revision + 1 "
             "WHERE bank_id = :bank_id AND signal = :signal RETURNING revision")
_SIGNALS_SQL = (f"SELECT r.signal, r.revision, EXISTS (SELECT 1 FROM {Vector.__tablename__} v "
                "WHERE v.bank_id = r.bank_id AND v.signal = r.signal) "
                f"FROM {IndexRevision.__tablename__} r WHERE r.bank_id = :bank_id")


# Session.info key: the subject rows a unit has read (Catalog.subjects), held until it writes or ends.
_SUBJECTS_READ = "subjects_read"


def _note_write(state: Any) -> None:
    """Mark a session that ran an INSERT, UPDATE or DELETE (Core or ORM) as holding writes."""
    if not state.is_select:
        state.session.info["wrote"] = True


def _note_flush(session: Session, _context: Any) -> None:
    session.info["wrote"] = True


def _in_unit(catalog: Catalog, session: Session) -> Iterator[Session]:
    """A ``session()`` block inside a unit: commit what it wrote, roll back if it fails."""
    session.info.pop("wrote", None)
    try:
        yield session
        if session.new or session.dirty or session.deleted or session.info.get("wrote") \
                or session.info.get("touched"):
            catalog._bump_touched(session)
            session.commit()
            session.info.pop("revisions_read", None)  # it may have bumped one
            session.info.pop(_SUBJECTS_READ, None)  # a new transaction reads rows anew
    except BaseException:
        session.rollback()
        session.info.pop("revisions_read", None)
        session.info.pop(_SUBJECTS_READ, None)
        raise
    finally:
        session.info.pop("wrote", None)


def bind_folder(data_dir: Path, identity: str) -> None:
    """Tie ``data_dir`` to the catalog ``identity``; FolderOfAnotherCatalog when it is tied to another.

    The first open writes ``catalog-id`` (0600; a folder of 0.1.0 gets it then);
    later opens compare. Two processes opening a new folder at once: the file
    is created exclusively, the loser reads the winner's, which is the same id.
    """
    path = Path(data_dir) / FOLDER_CATALOG_ID
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE)
    except FileExistsError:
        held = path.read_text(encoding="ascii").strip()
        if held and held != identity:
            raise FolderOfAnotherCatalog(
                f"the data folder {data_dir} belongs to another catalog (its index files, photos and audit "
                f"head are that catalog's): open it with that catalog, or use another data folder") from None
        if held:
            return
        path.write_text(identity + "\n", encoding="ascii")  # an empty file: a writer that died mid-way
        return
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(identity + "\n")


SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")
PRIVATE_MODE = 0o600


def _make_sqlite_file_private(url: str) -> None:
    """Make the catalog file and its WAL / shared-memory files readable by their owner only.

    They hold face embeddings, labels and case data, so they get 0600 like
    every other file of the data folder. The file is created empty (a valid,
    empty SQLite database) at 0600 before SQLite first opens it, instead of
    changing the process umask, which is process-wide and would race other
    threads. SQLite creates ``-wal`` and ``-shm`` with the database file's own
    permissions (os_unix.c, ``findCreateFileMode``), so they follow from then
    on, also when a later process re-creates them. Files of an older data
    folder are narrowed here on every open.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE)
        os.close(fd)
    except FileExistsError:
        pass
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            if companion.stat().st_mode & 0o777 != PRIVATE_MODE:
                os.chmod(companion, PRIVATE_MODE)
        except FileNotFoundError:
            continue


# PostgreSQL's "deadlock detected" and "could not serialize": the transaction was
# rolled back as a whole and may simply be run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def lost_a_race(exc: BaseException) -> bool:
    """Whether a failed transaction lost a race with another writer and is worth running again.

    A unique constraint refusing a row another writer inserted first, or a
    PostgreSQL deadlock / serialisation failure between two such writers.
    Not SQLite's "database is locked": that is raised only after the 30 s
    busy timeout, and trying again would hide a stuck writer.
    """
    if isinstance(exc, IntegrityError):
        return True
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return isinstance(exc, DBAPIError) and code in RETRYABLE_SQLSTATES


def scrub_reference_sources(engine: Engine) -> int:
    """Blank the file paths older versions stored for enrolled references; returns how many.

    ``reunite enroll`` used to keep each reference's manifest path in
    ``items.source`` in clear, and such a path (``photos/person1_JaneDoe.jpg``)
    names the person. Missing-person banks only (venue paths name places and
    venue crawls indexed with ``reunite index`` keep theirs). A read first, so
    that an open of a clean catalog never waits for the write lock.
    """
    people = select(Bank.id).where(Bank.kind.in_(SCRUBBED_KINDS))
    named = (Item.bank_id.in_(people), Item.source.not_in(KEPT_REFERENCE_SOURCES))
    with engine.connect() as conn:
        if conn.scalar(select(exists().where(*named))) is not True:
            return 0
    with engine.begin() as conn:
        return int(conn.execute(update(Item).where(*named).values(source=REFERENCE_SOURCE)).rowcount or 0)


SQLITE_CACHE_KIB = 16384  # per connection (PRAGMA cache_size), see _sqlite_pragmas


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Deleted personal data must not linger in free pages of the file.
    cursor.execute("PRAGMA secure_delete=ON")
    # A page cache large enough for the interior pages of the biggest tables (at 10M references
    # the vectors' and items' B-trees have ~7 MB of them) and the hot leaves: a hash lookup reads
    # a hundred random owner rows, and with SQLite's default 2 MB each was a few preads
    # (BENCHMARKS.md; 16 MB read them as fast as 64 MB did). Allocated as pages are read, per connection.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()
