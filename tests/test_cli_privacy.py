"""The CLI obeys the rules of the HTTP API: encryption key, consent expiry and the audit trail.

`reunite enroll`, `match`, `keys` and `export` go through the same application
layer as the service (api/application.py), so a missing key refuses the same
way, expired consent hides a subject from every searcher, and every action
leaves an event signed by ``cli:<unix user>``. Real subprocesses of the command,
a real SQLite catalog, real dlib faces on the fixture photos.
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from indexer.crypto import generate_key
from tests.conftest import catalog_sql, jpeg_bytes, photo, run_reunite

TODAY = dt.date.today()
CASE = "CASE-cli-privacy-4471"
CONSENT_BY = "Ottilie Clitestmother"
ACTOR = f"cli:{getpass.getuser()}"


def _manifest(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, name in (("person-a", "astronaut.png"), ("person-b", "camera.png")):
        path = folder / f"{label}.jpg"
        path.write_bytes(jpeg_bytes(photo(name)))
        rows.append({"path": str(path), "label": label, "consent_by": CONSENT_BY,
                     "consent_date": (TODAY - dt.timedelta(days=5)).isoformat(),
                     "consent_expires": (TODAY + dt.timedelta(days=300)).isoformat(),
                     "case_ref": f"{CASE}-{label}"})
    manifest = folder / "refs.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _events(data: Path) -> list[dict]:
    return [{"actor": r[0], "role": r[1], "action": r[2], "object": r[3], "result": r[4],
             "detail": json.loads(r[5])}
            for r in catalog_sql(data, "SELECT actor, role, action, object, result, detail FROM audit_events "
                                "ORDER BY seq")]


@pytest.fixture(scope="module")
def key() -> dict[str, str]:
    return {"REUNITE_ENCRYPTION_KEY": generate_key()}


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _manifest(tmp_path_factory.mktemp("refs"))


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory, refs: Path, key: dict[str, str]) -> Path:
    data = tmp_path_factory.mktemp("cli-privacy") / "data"
    run_reunite("enroll", str(refs), "--bank", "families", "--kind", "missing_person", "--quiet",
                data=data, env=key, check=True)
    return data


def test_enroll_without_the_key_exits_2_and_stores_nothing(tmp_path: Path, refs: Path) -> None:
    data = tmp_path / "data"
    done = run_reunite("enroll", str(refs), "--bank", "families", "--kind", "missing_person", "--quiet",
                       data=data, env={"REUNITE_ENCRYPTION_KEY": ""})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "REUNITE_ENCRYPTION_KEY" in lines[0], done.stderr
    catalog = data / "catalog.sqlite"
    if catalog.exists():
        tables = {t for (t,) in catalog_sql(data, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "subjects" in tables:
            assert catalog_sql(data, "SELECT COUNT(*) FROM subjects") == [(0,)]
        for blob in (CASE.encode(), CONSENT_BY.encode()):
            assert blob not in catalog.read_bytes()
        if "audit_events" in tables:  # the refusal itself is on record, like a refused HTTP request
            refused = [e for e in _events(data) if e["action"] == "subject.enroll"]
            assert refused and refused[-1]["result"] == "rejected"


def test_personal_fields_enrolled_from_the_cli_are_sealed(enrolled: Path) -> None:
    blob = (enrolled / "catalog.sqlite").read_bytes()
    assert CASE.encode() not in blob and CONSENT_BY.encode() not in blob
    assert catalog_sql(enrolled, "SELECT COUNT(*) FROM subjects") == [(2,)]


def test_match_of_a_missing_person_bank_needs_the_key(enrolled: Path, refs: Path) -> None:
    done = run_reunite("match", str(refs.parent / "person-a.jpg"), "--bank", "families", "--json",
                       data=enrolled, env={"REUNITE_ENCRYPTION_KEY": ""})
    assert done.returncode == 2 and "REUNITE_ENCRYPTION_KEY" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout.strip()


def test_cli_actions_are_audited_as_the_unix_user(enrolled: Path, refs: Path, key: dict[str, str],
                                                  tmp_path: Path) -> None:
    query = refs.parent / "person-a.jpg"
    done = run_reunite("match", str(query), "--bank", "families", "--json", data=enrolled, env=key,
                       check=True)
    [answer] = [json.loads(line) for line in done.stdout.splitlines()]
    assert answer["candidates"] and answer["candidates"][0]["label"] == "person-a"
    run_reunite("keys", "create", "--role", "reviewer", "--name", "cli-audited", data=enrolled, env=key,
                check=True)
    run_reunite("keys", "revoke", "cli-audited", data=enrolled, env=key, check=True)
    run_reunite("export", "--bank", "families", "--out", str(tmp_path / "list.pdq"), data=enrolled, env=key,
                check=True)
    events = _events(enrolled)
    mine = [e for e in events if e["actor"] == ACTOR]
    assert all(e["role"] == "admin" for e in mine)
    by_action = {e["action"]: e for e in mine}
    sha = hashlib.sha256(query.read_bytes()).hexdigest()
    assert by_action["match"]["object"] == f"query:{sha}" and by_action["match"]["result"] == "ok"
    assert by_action["match"]["detail"]["candidates"] >= 1
    assert by_action["subject.enroll"]["object"] == "bank:families"
    assert by_action["subject.enroll"]["detail"]["subjects"] == 2
    assert by_action["key.create"]["object"] == "key:cli-audited"
    assert by_action["key.revoke"]["object"] == "key:cli-audited"
    assert by_action["bank.export"]["object"] == "bank:families"
    dumped = json.dumps(events)
    for secret in (CASE, CONSENT_BY, "person-a", "person-b"):
        assert secret not in dumped
    assert run_reunite("audit", "verify", data=enrolled, env=key).returncode == 0


def test_cli_match_never_returns_a_subject_whose_consent_expired(enrolled: Path, refs: Path,
                                                                 key: dict[str, str], tmp_path: Path) -> None:
    query = tmp_path / "mirrored.jpg"  # found through the hashes (dihedral) and the face
    query.write_bytes(jpeg_bytes(photo("astronaut.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    other = refs.parent / "person-b.jpg"

    def labels(image: Path) -> list[str]:
        done = run_reunite("match", str(image), "--bank", "families", "--json", data=enrolled, env=key,
                           check=True)
        return [c["label"] for line in done.stdout.splitlines() for c in json.loads(line)["candidates"]]

    assert "person-a" in labels(query) and "person-a" in labels(refs.parent / "person-a.jpg")
    catalog_sql(enrolled, "UPDATE subjects SET consent_expires = '2001-01-01 00:00:00.000000' "
                   "WHERE label = 'person-a'")
    for image in (query, refs.parent / "person-a.jpg"):
        assert "person-a" not in labels(image)
    assert "person-b" in labels(other)  # the others are still found


def test_cli_withdrawal_purges_and_leaves_no_pseudonym_in_the_log(enrolled: Path, refs: Path,
                                                                 key: dict[str, str]) -> None:
    [(pseudonym,)] = catalog_sql(enrolled, "SELECT pseudonym FROM subjects WHERE label = 'person-b'")
    done = run_reunite("withdraw", pseudonym, data=enrolled, env=key)
    assert done.returncode == 0, done.stderr
    assert catalog_sql(enrolled, "SELECT COUNT(*) FROM subjects WHERE label = 'person-b'") == [(0,)]
    again = run_reunite("withdraw", pseudonym, data=enrolled, env=key)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    match = run_reunite("match", str(refs.parent / "person-b.jpg"), "--bank", "families", "--json",
                        data=enrolled, env=key, check=True)
    assert all(c["label"] != "person-b" for c in json.loads(match.stdout)["candidates"])
    withdrawals = [e for e in _events(enrolled) if e["action"] == "subject.withdraw"]
    assert [(e["actor"], e["result"]) for e in withdrawals] == [(ACTOR, "ok"), (ACTOR, "rejected")]
    # the sealed photo `reunite enroll` keeps for reviewers is purged with the rest
    assert withdrawals[0]["object"].startswith("subject:T-") and withdrawals[0]["detail"]["photos"] == 1
    assert pseudonym not in json.dumps(_events(enrolled))
    assert pseudonym.encode() not in (enrolled / "catalog.sqlite").read_bytes()
    assert run_reunite("audit", "verify", data=enrolled, env=key).returncode == 0
