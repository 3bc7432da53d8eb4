"""The keyed audit chain: every way of tampering with the log is caught by `reunite audit verify`.

The attacker of these tests can write the catalog and the data folder's head
file but does not hold the audit key (it lives in ``$REUNITE_AUDIT_KEY`` here,
outside the data folder). They recompute whatever a plain hash chain would let
them recompute: SHA-256 of every later event and a new head. Events are written
by the real :class:`api.audit.AuditLog` into a real SQLite catalog; verification
is the real command in a subprocess (exit 1 on any damage).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from api.audit import HEAD_FILE, PSEUDONYM, AuditLog
from indexer.crypto import generate_key
from indexer.store.catalog import Catalog, new_pseudonym
from tests.conftest import catalog_sql, run_reunite

COLUMNS = "seq, at, actor, role, action, object, result, detail, prev_hash, hash"


@pytest.fixture
def audit_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = generate_key()
    monkeypatch.setenv("REUNITE_AUDIT_KEY", key)
    return key


@pytest.fixture
def logged(tmp_path: Path, audit_key: str) -> Path:
    """A data folder with six genuine events."""
    data = tmp_path / "data"
    data.mkdir()
    log = AuditLog(Catalog.open(data), data)
    for n in range(6):
        log.append("cli:tester", "admin", "bank.read", f"bank:b{n}", "ok", {"n": n})
    log.catalog.engine.dispose()
    return data


def _verify(data: Path) -> tuple[int, str]:
    done = run_reunite("audit", "verify", data=data)
    return done.returncode, done.stdout + done.stderr


def _plain_hash(prev: str, row: tuple) -> str:
    """What a plain SHA-256 chain over the same canonical content would hold."""
    seq, at, actor, role, action, obj, result, detail = row[:8]
    body = json.dumps([seq, at, actor, role, action, obj, result, json.loads(detail)],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev + body).encode("ascii")).hexdigest()


def _rechain_from(data: Path, seq: int) -> tuple[int, str]:
    """Recompute every hash from ``seq`` on (as an attacker without the key would) and return the head."""
    rows = catalog_sql(data, f"SELECT {COLUMNS} FROM audit_events ORDER BY seq")
    prev = next(r[9] for r in rows if r[0] == seq - 1) if seq > 1 else "0" * 64
    for row in rows:
        if row[0] < seq:
            continue
        digest = _plain_hash(prev, row)
        catalog_sql(data, "UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?",
                    prev, digest, row[0])
        prev = digest
    return rows[-1][0], prev


def test_an_intact_log_verifies(logged: Path) -> None:
    code, out = _verify(logged)
    assert code == 0, out
    assert "intact: 6 events" in out


def test_deleting_the_last_event_is_detected_with_the_head_left_alone(logged: Path) -> None:
    catalog_sql(logged, "DELETE FROM audit_events WHERE seq = 6")
    code, out = _verify(logged)
    assert code == 1 and "deleted" in out, out


def test_deleting_the_last_event_and_rewriting_the_head_is_detected(logged: Path) -> None:
    catalog_sql(logged, "DELETE FROM audit_events WHERE seq = 6")
    [(digest,)] = catalog_sql(logged, "SELECT hash FROM audit_events WHERE seq = 5")
    head = logged / HEAD_FILE
    old_fields = head.read_text().split()
    for forged in (f"5 {digest}\n", " ".join(["5", digest, *old_fields[2:]]) + "\n"):
        head.write_text(forged)
        code, out = _verify(logged)
        assert code == 1 and "head" in out, (forged, out)


def test_deleting_the_last_event_and_the_head_file_is_detected(logged: Path) -> None:
    catalog_sql(logged, "DELETE FROM audit_events WHERE seq = 6")
    (logged / HEAD_FILE).unlink()
    code, out = _verify(logged)
    assert code == 1 and "head" in out, out


def test_a_missing_head_file_is_reported(logged: Path) -> None:
    (logged / HEAD_FILE).unlink()
    code, out = _verify(logged)
    assert code == 1 and "missing" in out and HEAD_FILE in out, out


def test_an_edited_head_is_detected(logged: Path) -> None:
    head = logged / HEAD_FILE
    fields = head.read_text().split()
    head.write_text(" ".join(["4", *fields[1:]]) + "\n")
    code, out = _verify(logged)
    assert code == 1 and "head" in out, out


def test_rewriting_a_middle_event_and_every_later_hash_and_the_head_is_detected(logged: Path) -> None:
    catalog_sql(logged, "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 3")
    last, digest = _rechain_from(logged, 3)
    (logged / HEAD_FILE).write_text(f"{last} {digest}\n")
    code, out = _verify(logged)
    assert code == 1 and "event 3" in out, out


def test_a_log_cannot_be_verified_without_its_key(logged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REUNITE_AUDIT_KEY", generate_key())  # the wrong key: as good as none
    code, out = _verify(logged)
    assert code == 1, out
    monkeypatch.delenv("REUNITE_AUDIT_KEY")
    code, out = _verify(logged)
    assert code == 1 and "REUNITE_AUDIT_KEY" in out, out


def test_the_key_file_is_made_outside_the_catalog_with_owner_only_access(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REUNITE_AUDIT_KEY", raising=False)
    monkeypatch.delenv("REUNITE_AUDIT_KEY_FILE", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    log = AuditLog(Catalog.open(data), data)
    log.append("cli:tester", "admin", "bank.read", "bank:x", "ok")
    key_file = data / "keys" / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_bytes().strip() not in (data / "catalog.sqlite").read_bytes()
    assert _verify(data)[0] == 0
    # An operator may move the key elsewhere and point at it.
    moved = tmp_path / "elsewhere.key"
    key_file.rename(moved)
    assert _verify(data)[0] == 1
    monkeypatch.setenv("REUNITE_AUDIT_KEY_FILE", str(moved))
    assert _verify(data)[0] == 0


def test_a_log_from_before_the_keyed_chain_stays_verifiable_and_is_sealed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Old catalogs: their plain chain is checked, and the first writer with a key seals it."""
    monkeypatch.delenv("REUNITE_AUDIT_KEY", raising=False)
    monkeypatch.delenv("REUNITE_AUDIT_KEY_FILE", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    AuditLog(Catalog.open(data), data).catalog.engine.dispose()  # makes the table
    shutil.rmtree(data / "keys")
    (data / HEAD_FILE).unlink(missing_ok=True)
    # What the plain SHA-256 version wrote: plain hashes and a two-field head.
    for seq, action in ((1, "bank.read"), (2, "bank.list"), (3, "match")):
        catalog_sql(data, f"INSERT INTO audit_events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
             seq, "2026-01-01T00:00:00.000000+00:00", "old", "admin", action, "bank:a", "ok", "{}", "", "")
    last, digest = _rechain_from(data, 1)
    (data / HEAD_FILE).write_text(f"{last} {digest}\n")
    code, out = _verify(data)
    assert code == 0 and "before the keyed chain" in out, out
    monkeypatch.setenv("REUNITE_AUDIT_KEY", generate_key())
    code, out = _verify(data)  # with a key configured an unsigned head is not enough
    assert code == 1 and "not signed" in out, out
    reopened = AuditLog(Catalog.open(data), data)  # any writer seals it
    actions = [e.action for e in reopened.events(limit=10)]
    assert actions == ["bank.read", "bank.list", "match", "audit.seal"]
    reopened.catalog.engine.dispose()
    assert _verify(data)[0] == 0
    # Sealed: going back to the old form (seal deleted, unsigned head) no longer passes ...
    [(digest3,)] = catalog_sql(data, "SELECT hash FROM audit_events WHERE seq = 3")
    seal = catalog_sql(data, f"SELECT {COLUMNS} FROM audit_events WHERE seq = 4")[0]
    head = (data / HEAD_FILE).read_text()
    catalog_sql(data, "DELETE FROM audit_events WHERE seq = 4")
    (data / HEAD_FILE).write_text(f"3 {digest3}\n")
    assert _verify(data)[0] == 1
    catalog_sql(data, f"INSERT INTO audit_events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", *seal)
    (data / HEAD_FILE).write_text(head)
    assert _verify(data)[0] == 0
    # ... nor does rewriting the old part and its plain hashes.
    catalog_sql(data, "UPDATE audit_events SET actor = 'forger' WHERE seq = 2")
    _rechain_from(data, 2)
    assert _verify(data)[0] == 1


def test_subjects_are_named_by_a_keyed_token_never_by_their_pseudonym(logged: Path) -> None:
    log = AuditLog(Catalog.open(logged), logged)
    pseudonym = "S-0123456789abcdef"
    log.append("reviewer", "reviewer", "subject.read", f"subject:{pseudonym}", "ok",
               {"path": f"/v1/subjects/{pseudonym}/photos/3"})
    event = log.events(offset=6, limit=1)[0]
    assert event.object == f"subject:{log.subject_ref(pseudonym)}"
    assert pseudonym not in json.dumps(event.to_json())
    assert pseudonym.encode() not in (logged / "catalog.sqlite").read_bytes()
    assert log.subject_ref(pseudonym) != log.subject_ref("S-fedcba9876543210")
    assert all(PSEUDONYM.fullmatch(new_pseudonym()) for _ in range(20))  # the form the catalog makes
    assert _verify(logged)[0] == 0


def test_a_write_after_a_truncation_does_not_hide_it(logged: Path) -> None:
    """The next command would write a fresh head over the evidence; it records the damage first."""
    catalog_sql(logged, "DELETE FROM audit_events WHERE seq >= 5")
    (logged / HEAD_FILE).unlink()
    run_reunite("keys", "create", "--role", "reviewer", "--name", "after-truncation", data=logged, check=True)
    assert (logged / HEAD_FILE).exists()
    code, out = _verify(logged)
    assert code == 1 and "head_missing" in out, out


def test_a_command_refuses_to_write_to_a_signed_log_without_its_key(
        logged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REUNITE_AUDIT_KEY")
    done = run_reunite("keys", "create", "--role", "reviewer", "--name", "no-key", data=logged)
    assert done.returncode == 2 and "REUNITE_AUDIT_KEY" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert catalog_sql(logged, "SELECT COUNT(*) FROM audit_events") == [(6,)]
    assert not (logged / "keys" / "audit.key").exists()  # no new key that would orphan the chain
