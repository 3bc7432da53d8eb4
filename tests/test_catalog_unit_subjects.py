"""A catalog unit reads a lookup's subject rows once, and never past the unit.

One hash lookup checks its hits' subjects three times (ranking, consent, the
minors' regime). Inside :meth:`Catalog.unit` the rows are read once and kept
for the unit's later checks; the next lookup, or a block that committed a
write, reads them again, so a consent expiry or a minor's protection written
by another process (here: another ``Catalog`` over the same file, as a second
API worker or ``reunite withdraw`` has) holds from the very next lookup.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from sqlalchemy import event, update

from indexer import pipeline
from indexer.signals.base import SignalVector
from indexer.store.catalog import Catalog, Subject
from indexer.store.store import NewImage, Store
from matcher import defaults as defaults_mod
from matcher.search.hashes import match_hashes, parse_hashes
from matcher.search.query import Matcher


def _bank(folder: Path) -> tuple[Store, object, np.ndarray]:
    store = Store(folder)
    bank = store.catalog.ensure_bank("list", "hashes", {"signals": ["hashes"]})
    codes = np.random.default_rng(3).integers(0, 256, (4, 32), dtype=np.uint8)
    store.add_images(bank, [NewImage(pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1,
                                                         [SignalVector("pdq", codes[n], quality=1.0)]),
                                     f"subject-{n}") for n in range(4)])
    return store, bank, codes


def _hits(found: list) -> list:  # noqa: ANN001 - candidates
    """The candidates at match or review (a four-reference flat bank lists its far neighbours too)."""
    return [c for c in found if c.decision != "none"]


def _subject_selects(catalog: Catalog) -> list[str]:
    """Every SELECT of the subjects table SQLite runs from now on (the lookup's statements run on the
    DB-API cursor, past SQLAlchemy's events: sqlite3's trace callback sees each one)."""
    seen: list[str] = []

    def note(statement: str) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM subjects" in statement:
            seen.append(statement)

    catalog.engine.dispose()  # every connection from here on is a new one, traced
    event.listen(catalog.engine, "connect", lambda dbapi, _record: dbapi.set_trace_callback(note))
    return seen


def test_one_lookup_reads_its_subjects_once(tmp_path: Path) -> None:
    store, bank, codes = _bank(tmp_path)
    matcher = Matcher(store, defaults_mod.load())
    seen = _subject_selects(store.catalog)
    with store.catalog.unit():
        found = match_hashes(matcher, parse_hashes({"pdq": codes[1].tobytes().hex()}), [bank], 10)
    assert [c.label for c in _hits(found)] == ["subject-1"]
    assert len(seen) == 1  # ranking read it; consent and the minors' regime reused it


def test_a_withdrawal_by_another_process_holds_on_the_next_lookup(tmp_path: Path) -> None:
    store, bank, codes = _bank(tmp_path)
    matcher = Matcher(store, defaults_mod.load())
    query = parse_hashes({"pdq": codes[2].tobytes().hex()})
    with store.catalog.unit():
        assert [c.label for c in _hits(match_hashes(matcher, query, [bank], 10))] == ["subject-2"]
    other = Catalog.open(tmp_path)  # a second worker's catalog over the same file
    with other.engine.begin() as conn:
        conn.execute(update(Subject).where(Subject.label == "subject-2")
                     .values(consent_expires=dt.datetime(2000, 1, 1)))
    with store.catalog.unit():
        assert "subject-2" not in [c.label for c in match_hashes(matcher, query, [bank], 10)]
    with other.engine.begin() as conn:  # and a child's protection, written elsewhere, too
        conn.execute(update(Subject).where(Subject.label == "subject-3")
                     .values(protected_until=dt.date(2999, 1, 1)))
    with store.catalog.unit():
        [hit] = _hits(match_hashes(matcher, parse_hashes({"pdq": codes[3].tobytes().hex()}), [bank], 10))
    assert hit.minor_policy and hit.decision == "review"
    other.engine.dispose()


def test_a_write_inside_the_unit_reads_the_rows_again(tmp_path: Path) -> None:
    store, _bank_row, _codes = _bank(tmp_path)
    catalog = store.catalog
    seen = _subject_selects(catalog)
    with catalog.unit():
        with catalog.session() as s:
            [sid] = [x.id for x in catalog.subjects(s, range(1, 100)).values() if x.label == "subject-0"]
        with catalog.session() as s:
            catalog.subjects(s, [sid])
        assert len(seen) == 1
        with catalog.session() as s:  # a block that writes commits: a new transaction
            s.execute(update(Subject).where(Subject.id == sid)
                      .values(consent_expires=dt.datetime(2000, 1, 1)))
        with catalog.session() as s:
            row = catalog.subjects(s, [sid])[sid]
        assert len(seen) == 2 and row.consent_expires == dt.datetime(2000, 1, 1)
