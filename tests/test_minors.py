"""Children: at most ``review``, two reviewers, first in the queue, a reason to reveal, on every path.

The same face photo is enrolled for a child (date of birth 10 years ago) and an
adult in missing-person banks, then searched with its exact copy: the adult's
candidate is a ``match``, the child's never more than ``review`` and flagged
``minor_policy``, over HTTP, on the command line and on the reviewer pages.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import LiveApi, consent_record, encryption_key, live_api, reunite, web_session
from conftest import photo, png_bytes

from indexer import age
from indexer.store.catalog import Bank, Item, Subject
from matcher.privacy import minors
from matcher.review import queue as review
from matcher.review import stats as review_stats
from matcher.search import decide
from matcher.search.query import Candidate

TODAY = dt.datetime.now(dt.UTC).date()
CHILD_DOB = TODAY.replace(year=TODAY.year - 10, day=1).isoformat()


def _face() -> bytes:
    return png_bytes(photo("astronaut.png").crop((130, 20, 370, 260)).resize((160, 160)))


# --- the rule ------------------------------------------------------------------------

def test_protection_ends_on_the_first_of_january_after_the_eighteenth_birthday() -> None:
    day = dt.date(2026, 6, 15)
    assert age.protected_until(dt.date(2010, 3, 5), False, day) == dt.date(2029, 1, 1)
    assert age.protected_until(dt.date(2008, 2, 29), False, day) == dt.date(2027, 1, 1)
    assert age.protected_until(dt.date(2000, 1, 1), False, day) is None  # an adult: nothing stored
    assert age.protected_until(None, True, day) == age.UNTIL_FURTHER_NOTICE
    assert age.protected_until(None, False, day) is None
    with pytest.raises(ValueError, match="future"):
        age.protected_until(dt.date(2027, 1, 1), False, day)
    with pytest.raises(ValueError, match="18 or older"):
        age.protected_until(dt.date(2000, 1, 1), True, day)
    with pytest.raises(ValueError, match="true or false"):
        age.parse_minor_fields({"minor": "perhaps"}, day)


def test_ageing_out_is_automatic(tmp_path: Path) -> None:
    """The cap holds until the stored day, and not on it: the day of the search decides."""
    from indexer.store.store import Store

    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("families", "venue")
    with store.catalog.session() as s:
        subject = Subject(bank_id=bank.id, label="s1", protected_until=dt.date(2030, 1, 1))
        s.add(subject)
        s.flush()
        sid = subject.id

    def cand() -> Candidate:
        return Candidate("families", "s1", sid, None, 1, 0.95, decide.MATCH)

    [before] = minors.apply_minor_policy(store, [cand()], today=dt.date(2029, 12, 31))
    [after] = minors.apply_minor_policy(store, [cand()], today=dt.date(2030, 1, 1))
    assert (before.decision, before.minor_policy) == (decide.REVIEW, True)
    assert (after.decision, after.minor_policy) == (decide.MATCH, False)


def test_a_childs_candidate_needs_two_reviewers_and_comes_first(tmp_path: Path) -> None:
    """In a bank that asks one reviewer, a child's candidate still needs two; the queue lists it first."""
    from indexer.store.store import Store

    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("rooms", "venue")
    queue = review.ReviewQueue(store.catalog)
    with store.catalog.session() as s:
        bank_row = s.get(Bank, bank.id)
        items = [Item(bank_id=bank.id, sha256=c * 64) for c in "cd"]
        s.add_all(items)
        s.flush()
        ids = [i.id for i in items]
    adult = Candidate("rooms", "adult", None, None, ids[0], 0.7, decide.REVIEW)
    child = Candidate("rooms", "child", None, None, ids[1], 0.6, decide.REVIEW, minor_policy=True)
    first = queue.record([adult], {"rooms": bank_row}, "a" * 64, "inv")
    second = queue.record([child], {"rooms": bank_row}, "b" * 64, "inv")
    rows, _total = queue.list()
    assert [r.id for r in rows] == [second[0], first[0]]
    assert [r.required_reviews for r in rows] == [2, 1]
    for order in ("score", "oldest", "newest"):  # the reviewer pages' queue, and their next/previous
        f = review_stats.QueueFilter(order=order)
        page, _n = review_stats.queue_page(store.catalog, f)
        assert [r.id for r in page] == [second[0], first[0]], order
        assert review_stats.neighbour(store.catalog, f, second[0], forward=True) == first[0]
        assert review_stats.neighbour(store.catalog, f, first[0], forward=False) == second[0]
        assert review_stats.neighbour(store.catalog, f, first[0], forward=True) is None
        assert review_stats.neighbour(store.catalog, f, second[0], forward=False) is None
    with pytest.raises(review.Conflict) as unseen:  # a child is confirmed only after the photo was seen
        queue.decide(second[0], "r1", "reviewer", "confirm")
    assert unseen.value.code == "reveal_required"
    queue.record_reveal([second[0]], "r1")
    queue.record_reveal([second[0]], "r2")
    row, _view = queue.decide(second[0], "r1", "reviewer", "confirm")
    assert row.state == review.AWAITING_SECOND
    with pytest.raises(review.Conflict):
        queue.decide(second[0], "r1", "reviewer", "confirm")
    assert queue.decide(second[0], "r2", "reviewer", "confirm")[0].state == review.CONFIRMED


# --- HTTP, web pages -----------------------------------------------------------------

@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("minors") / "data",
                                    catalog_url=module_catalog_url) as running:
        admin = running.as_("admin")
        for name in ("children", "adults"):
            assert admin.post("/v1/banks", json={"name": name, "kind": "missing_person"}).status_code == 201
        for bank, extra in (("children", {"date_of_birth": CHILD_DOB}), ("adults", {})):
            record = {**consent_record(f"{bank}-1"), **extra}
            r = admin.post(f"/v1/banks/{bank}/subjects", data={"record": json.dumps(record)},
                           files=[("photos", ("p.png", _face(), "image/png"))])
            assert r.status_code == 201, r.text
        yield running


def _match(api: LiveApi) -> dict[str, dict]:
    r = api.as_("investigator").post("/v1/match", data={"banks": "children,adults"},
                                     files={"image": ("ad.png", _face(), "image/png")})
    assert r.status_code == 200, r.text
    return {c["bank"]: c for c in r.json()["candidates"]}


def test_http_match_caps_a_child_at_review_and_says_so(api: LiveApi) -> None:
    found = _match(api)
    assert found["adults"]["decision"] == "match" and found["adults"]["minor_policy"] is False
    assert found["children"]["decision"] == "review" and found["children"]["minor_policy"] is True
    assert CHILD_DOB not in json.dumps(found)
    cid = found["children"]["candidate_id"]
    stored = api.as_("reviewer").get(f"/v1/review/candidates/{cid}").json()
    assert stored["minor_policy"] is True and stored["required_reviews"] == 2
    assert "date_of_birth" not in (stored["personal"] or {})
    queue = api.as_("reviewer").get("/v1/review/candidates").json()["candidates"]
    assert queue[0]["id"] == cid  # children first
    # Sealed at rest: the date of birth is nowhere in the data folder in clear.
    api.service.store.checkpoint()
    blobs = [p.read_bytes() for p in api.data_dir.rglob("*") if p.is_file()]
    assert not any(CHILD_DOB.encode() in b for b in blobs)


def test_http_reveal_of_a_childs_photo_needs_a_reason_in_the_audit_event(api: LiveApi) -> None:
    subjects = api.as_("admin").get("/v1/banks/children/subjects").json()
    child = next(s for s in subjects["subjects"])
    pseudonym, item = child["pseudonym"], child["photos"][0]["item"]
    refused = api.as_("reviewer").get(f"/v1/subjects/{pseudonym}/photos/{item}")
    assert refused.status_code == 422 and refused.json()["error"] == "reveal_reason_required"
    shown = api.as_("reviewer").get(f"/v1/subjects/{pseudonym}/photos/{item}",
                                    params={"reason": "compare with ad batch 7 before calling the family"})
    assert shown.status_code == 200 and shown.content == _face()
    events = [e for e in api.service.audit.events(limit=100_000) if e.action == "subject.photo.reveal"]
    assert events[-1].detail.get("reason") == "compare with ad batch 7 before calling the family"
    assert events[-1].detail.get("minor_policy") is True
    assert events[-2].result == "rejected"


def test_the_date_of_birth_stays_sealed_in_every_subject_read_for_every_role(api: LiveApi) -> None:
    """Subject reads (one, a bank's list, an enrolment's answer, a review candidate) for every role:
    the sealed ``date_of_birth`` / ``minor`` never come back, the regime is the ``minor_policy`` flag."""
    from api.auth import ROLES

    def no_age(body: object) -> None:
        text = json.dumps(body)
        assert CHILD_DOB not in text and "date_of_birth" not in text and '"minor"' not in text, text

    admin = api.as_("admin")
    child = admin.get("/v1/banks/children/subjects").json()["subjects"][0]["pseudonym"]
    adult = admin.get("/v1/banks/adults/subjects").json()["subjects"][0]["pseudonym"]
    readers = {"admin", "reviewer", "investigator"}
    for role in ROLES:
        client = api.as_(role)
        for path in (f"/v1/subjects/{child}", "/v1/banks/children/subjects"):
            r = client.get(path)
            assert r.status_code == (200 if role in readers else 403), (role, path, r.text)
            no_age(r.json())
        if role in readers:
            assert client.get(f"/v1/subjects/{child}").json()["minor_policy"] is True
            assert client.get(f"/v1/subjects/{adult}").json()["minor_policy"] is False
    personal = admin.get(f"/v1/subjects/{child}").json()["personal"]
    assert personal["case_ref"] == "CASE-children-1"  # the rest of the sealed record is still shown
    assert admin.post("/v1/banks", json={"name": "kids-read", "kind": "missing_person"}).status_code == 201
    record = {**consent_record("kids-read-1"), "date_of_birth": CHILD_DOB, "minor": True}
    made = admin.post("/v1/banks/kids-read/subjects", data={"record": json.dumps(record)},
                      files=[("photos", ("p.png", _face(), "image/png"))])
    assert made.status_code == 201, made.text
    no_age(made.json())
    assert made.json()["subject"]["minor_policy"] is True
    cid = _match(api)["children"]["candidate_id"]
    for role in ("admin", "reviewer"):
        stored = api.as_(role).get(f"/v1/review/candidates/{cid}")
        assert stored.status_code == 200
        no_age(stored.json())


def test_web_pages_show_the_policy_and_ask_a_reason_to_reveal(api: LiveApi) -> None:
    cid = _match(api)["children"]["candidate_id"]
    web = web_session(api, api.key("reviewer", "web-minors"))
    queue = web.get("/review/")
    assert queue.status_code == 200 and "minor-policy" in queue.text
    page = web.get(f"/review/candidates/{cid}")
    assert 'id="minor-policy"' in page.text and 'name="reason"' in page.text
    assert CHILD_DOB not in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    refused = web.post(f"/review/candidates/{cid}/reveal", data={"csrf": csrf})
    assert refused.status_code == 303 and "reveal_reason_required" in refused.headers["location"]
    assert web.get(f"/review/candidates/{cid}/reference-image").status_code != 200
    shown = web.post(f"/review/candidates/{cid}/reveal", data={"csrf": csrf, "reason": "second look"})
    assert shown.status_code == 303 and "error" not in shown.headers["location"]
    assert web.get(f"/review/candidates/{cid}/reference-image").status_code == 200
    events = [e for e in api.service.audit.events(limit=100_000) if e.action == "subject.photo.reveal"]
    assert events[-1].detail.get("reason") == "second look"


# --- the command line ------------------------------------------------------------------

def test_cli_enroll_and_match_honour_the_policy(tmp_path: Path) -> None:
    face = tmp_path / "face.png"
    face.write_bytes(_face())
    manifest = tmp_path / "children.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "consent_by", "consent_date", "consent_expires", "case_ref",
                               "date_of_birth", "minor"])
        w.writeheader()
        w.writerow({"path": str(face), "label": "kid", "consent_by": "parent", "consent_date": "2026-01-05",
                    "consent_expires": "2099-12-31", "case_ref": "C-1", "date_of_birth": "", "minor": "yes"})
    data = tmp_path / "data"
    with encryption_key() as key:
        env = {"REUNITE_ENCRYPTION_KEY": key}
        done = reunite("enroll", str(manifest), "--bank", "kids", "--kind", "missing_person", data=data,
                       env=env)
        assert done.returncode == 0, done.stderr
        out = reunite("match", str(face), "--bank", "kids", "--json", data=data, env=env)
        assert out.returncode == 0, out.stderr
        [cand] = json.loads(out.stdout.splitlines()[0])["candidates"]
        assert cand["decision"] == "review" and cand["minor_policy"] is True
        bad = manifest.read_text().replace(",,yes", ",2001-01-01,yes")
        manifest.write_text(bad)
        refused = reunite("enroll", str(manifest), "--bank", "kids", "--kind", "missing_person", data=data,
                          env=env)
        assert refused.returncode == 2 and "18 or older" in refused.stderr
        assert "2001" not in refused.stderr


def test_cli_output_never_shows_the_date_of_birth(tmp_path: Path) -> None:
    """`reunite enroll` and `reunite match` (JSON and text) with a child enrolled by date of birth."""
    face = tmp_path / "face.png"
    face.write_bytes(_face())
    manifest = tmp_path / "children.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "consent_by", "consent_date", "consent_expires", "case_ref",
                               "date_of_birth"])
        w.writeheader()
        w.writerow({"path": str(face), "label": "kid", "consent_by": "parent", "consent_date": "2026-01-05",
                    "consent_expires": "2099-12-31", "case_ref": "C-1", "date_of_birth": CHILD_DOB})
    data = tmp_path / "data"
    with encryption_key() as key:
        env = {"REUNITE_ENCRYPTION_KEY": key}
        outputs = [reunite("enroll", str(manifest), "--bank", "kids", "--kind", "missing_person", data=data,
                           env=env)]
        outputs.append(reunite("match", str(face), "--bank", "kids", "--json", data=data, env=env))
        outputs.append(reunite("match", str(face), "--bank", "kids", data=data, env=env))
    for done in outputs:
        assert done.returncode == 0, done.stderr
        assert CHILD_DOB not in done.stdout + done.stderr and "date_of_birth" not in done.stdout + done.stderr
    [cand] = json.loads(outputs[1].stdout.splitlines()[0])["candidates"]
    assert cand["decision"] == "review" and cand["minor_policy"] is True
