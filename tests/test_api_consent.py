"""Encryption at rest and consent withdrawal, checked on the bytes of the data folder.

A missing person's reference photos and personal fields must never sit in clear
in the data folder, and a withdrawal must leave nothing of the subject behind:
not in the catalog (rows, free pages, write-ahead log), not in any vector index
file, not in the photo store, not in the review queue, and not findable by
searching with the very same photos.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import LiveApi, consent_record, encryption_key, live_api
from conftest import jpeg_bytes, photo, png_bytes
from sqlalchemy import select

from indexer.store.catalog import Item, Subject, Vector

NAME = "Maria-Quintessa Examplewoman"
CASE = "CASE-77Q-unique-reference"
CONSENT_BY = "Juniper Examplewoman (mother)"


def _face_photo(side: int = 160) -> bytes:
    return png_bytes(photo("astronaut.png").crop((130, 20, 370, 260)).resize((side, side)))


def _other_photo() -> bytes:
    return png_bytes(photo("chelsea.png").resize((150, 100)))


def _enroll(api: LiveApi, label: str, photos: list[bytes], **personal: str) -> dict:
    record = {**consent_record(label), "case_ref": f"{CASE}-{label}", "consent_by": CONSENT_BY,
              "personal": personal}
    r = api.as_("admin").post("/v1/banks/families/subjects", data={"record": json.dumps(record)},
                              files=[("photos", (f"p{n}.png", data, "image/png"))
                                     for n, data in enumerate(photos)])
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("consent") / "data",
                                    catalog_url=module_catalog_url) as running:
        r = running.as_("admin").post("/v1/banks", json={"name": "families", "kind": "missing_person"})
        assert r.status_code == 201, r.text
        yield running


def _files(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


def _found(root: Path, needles: dict[str, bytes], api: LiveApi | None = None) -> list[str]:
    """Where the needles are in the data folder's files (and in the catalog database when elsewhere)."""
    hits = []
    if api is not None and api.catalog_url:
        stored = api.stored_bytes()
        hits += [f"{what} in the catalog database" for what, needle in needles.items()
                 if needle in stored or needle.hex().encode() in stored]
    for path, blob in _files(root):
        for what, needle in needles.items():
            if needle in blob:
                hits.append(f"{what} in {path.relative_to(root)}")
    return hits


def test_reference_photos_and_personal_fields_are_encrypted_at_rest(api: LiveApi) -> None:
    face, other = _face_photo(), _other_photo()
    enrolled = _enroll(api, "enc-subject", [face, other], name=NAME)
    pseudonym = enrolled["subject"]["pseudonym"]
    api.service.store.checkpoint()
    leaks = _found(api.data_dir, {"photo 1": face, "photo 2": other, "photo 2 pixels": other[-400:],
                                  "name": NAME.encode(), "case": CASE.encode(),
                                  "consent_by": CONSENT_BY.encode()}, api)
    assert not leaks, leaks
    # The reviewer sees the photo and the personal fields; the investigator sees neither.
    items = [p["item"] for p in enrolled["subject"]["photos"]]
    r = api.as_("reviewer").get(f"/v1/subjects/{pseudonym}/photos/{items[0]}")
    assert r.status_code == 200 and r.content in (face, other)
    assert r.headers["cache-control"] == "no-store"
    assert api.as_("reviewer").get(f"/v1/subjects/{pseudonym}").json()["personal"]["name"] == NAME
    seen = api.as_("investigator").get(f"/v1/subjects/{pseudonym}").json()
    assert seen["personal"] is None and seen["label"] is None and seen["consent_expires"] is None
    assert api.as_("investigator").get(f"/v1/subjects/{pseudonym}/photos/{items[0]}").status_code == 403
    reveal = [(e.actor, e.result, e.object) for e in api.service.audit.events(limit=100_000)
              if e.action == "subject.photo.reveal"]
    ref = f"subject:{api.service.audit.subject_ref(pseudonym)}"
    assert reveal == [("test-reviewer", "ok", ref), ("test-investigator", "denied", ref)]


def test_withdrawal_purges_the_subject_everywhere(api: LiveApi) -> None:
    gone_photos = [_face_photo(150), png_bytes(photo("coffee.png").resize((120, 120)))]
    kept_photo = png_bytes(photo("rocket.jpg").resize((140, 100)))
    gone = _enroll(api, "withdrawn-subject", gone_photos, name=NAME + " Withdrawn",
                   school="Quillfeather Academy")
    kept = _enroll(api, "kept-subject", [kept_photo], name="Someone Else")
    pseudonym = gone["subject"]["pseudonym"]
    investigator = api.as_("investigator")

    # Before: the photos find the subject and a candidate enters the queue.
    query = jpeg_bytes(photo("coffee.png").resize((120, 120)), 92)
    r = investigator.post("/v1/match", data={"banks": "families"},
                          files={"image": ("q.jpg", query, "image/jpeg")})
    found = [c for c in r.json()["candidates"] if c["pseudonym"] == pseudonym]
    assert found and found[0]["candidate_id"], r.text
    assert found[0]["label"] is None  # investigators never see a missing person's label
    with api.service.store.catalog.session() as s:
        subject = s.scalar(select(Subject).where(Subject.pseudonym == pseudonym))
        vectors = list(s.scalars(select(Vector.data).join(Item, Item.id == Vector.item_id)
                                 .where(Item.subject_id == subject.id)))
        label = subject.label
        others = set(s.scalars(select(Vector.data).join(Item, Item.id == Vector.item_id)
                               .where(Item.subject_id != subject.id)))
    assert len(vectors) >= 2 * 5
    # Two photos of one face can share a hash with another subject's photo; only bytes
    # that belong to this subject alone can be looked for.
    unique = [v for v in vectors if v not in others]
    assert len(unique) >= len(vectors) // 2

    r = api.as_("admin").delete(f"/v1/subjects/{pseudonym}")
    assert r.status_code == 200, r.text
    assert r.json()["candidates"] >= 1 and r.json()["photos"] == 2 and r.json()["vectors"] == len(vectors)

    # After: the same photos no longer find the subject, the other subject still is found.
    for data in [*gone_photos, query]:
        r = investigator.post("/v1/match", data={"banks": "families"},
                              files={"image": ("q.png", data, "image/png")})
        assert r.status_code == 200
        assert all(c["pseudonym"] != pseudonym for c in r.json()["candidates"]), r.text
    r = investigator.post("/v1/match", data={"banks": "families"},
                          files={"image": ("k.png", kept_photo, "image/png")})
    assert r.json()["candidates"][0]["pseudonym"] == kept["subject"]["pseudonym"]
    assert api.as_("admin").get(f"/v1/subjects/{pseudonym}").status_code == 404
    assert api.as_("admin").delete(f"/v1/subjects/{pseudonym}").status_code == 404
    queue = api.as_("reviewer").get("/v1/review/candidates", params={"limit": 200}).json()
    assert all(c["pseudonym"] != pseudonym for c in queue["candidates"])

    # Nothing of the subject remains in any file of the data folder.
    needles = {f"vector {n}": v for n, v in enumerate(unique)}
    needles |= {"label": label.encode(), "school": b"Quillfeather Academy",
                "photo 1": gone_photos[0], "photo 2": gone_photos[1], "query": query}
    leaks = _found(api.data_dir, needles, api)
    assert not leaks, leaks

    # The audit log keeps the withdrawal, with no personal data.
    events = api.service.audit.events(limit=100_000)
    withdrawal = [e for e in events if e.action == "subject.withdraw" and e.result == "ok"]
    assert withdrawal and withdrawal[-1].object == f"subject:{api.service.audit.subject_ref(pseudonym)}"
    dumped = json.dumps([e.to_json() for e in events])
    for secret in (NAME, "Quillfeather", CASE, CONSENT_BY, label):
        assert secret not in dumped
    # Nor its pseudonym: every event about the subject (enroll, match, queue, withdrawal) names
    # it by a keyed ref, so nothing links back to them without the pseudonym and the audit key.
    about = [e for e in events if api.service.audit.subject_ref(pseudonym) in json.dumps(e.to_json())]
    assert len(about) >= 2
    assert pseudonym not in dumped
    assert not api.holds(pseudonym.encode())
