"""The HMA-compatible API: an HMA client that only changes its base URL and adds a key.

HMA (facebook/ThreatExchange, hasher-matcher-actioner/src/OpenMediaMatch) has
no Python client class; its integrations call the routes its API page and its
own tests document (blueprints/matching.py, blueprints/hashing.py,
tests/test_match_api.py, tests/test_api.py). ``HmaClient`` below sends exactly
those requests, plus reunite's key header, to a real uvicorn over loopback.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from api_support import LiveApi, consent_record, encryption_key, live_api
from conftest import jpeg_bytes, photo, png_bytes
from PIL import Image
from sqlalchemy import select

from api.visibility import opaque_int
from indexer import pipeline
from indexer.store.catalog import Subject

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ADS_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg")
HASHES_ONLY = {"signals": ["hashes"]}
# HMA's own compare specimens (tests/test_api.py::test_compare_hashes): 9 bits apart.
SPECIMEN1 = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"
SPECIMEN2 = "facd8bcb2a49bcebdec1985228d5ae84bcd006c187c598c720c2b087b3fdb318"


class HmaClient:
    """The calls of an HMA integration, as HMA documents them; only the base URL and a key are new."""

    def __init__(self, base_url: str, key: str, *, bearer: bool = False) -> None:
        headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=120)

    def raw_lookup(self, signal: str, signal_type: str = "pdq", banks: str | None = None,
                   include_distance: bool = False) -> httpx.Response:
        params: dict[str, object] = {"signal": signal, "signal_type": signal_type}
        if banks is not None:
            params["banks"] = banks
        if include_distance:
            params["include_distance"] = True
        return self.http.get("/m/raw_lookup", params=params)

    def lookup(self, signal: str, signal_type: str = "pdq", banks: str | None = None) -> httpx.Response:
        params = {"signal_type": signal_type, "signal": signal}
        if banks is not None:
            params["banks"] = banks
        return self.http.get("/m/lookup", params=params)

    def lookup_file(self, name: str, data: bytes, field: str = "photo") -> httpx.Response:
        # curl -X POST --form photo='@example.png' http://localhost:5100/m/lookup?bypass_coinflip=false
        return self.http.post("/m/lookup", params={"bypass_coinflip": "false"},
                              files={field: (name, data, "image/jpeg")})

    def hash_file(self, name: str, data: bytes, field: str = "photo") -> httpx.Response:
        # curl -X POST --form photo='@example.png' http://localhost:5100/h/hash
        return self.http.post("/h/hash", files={field: (name, data, "image/png")})

    def hash_url(self, url: str) -> httpx.Response:
        return self.http.get("/h/hash", params={"url": url})

    def compare(self, body: object) -> httpx.Response:
        return self.http.post("/m/compare", json=body)

    def index_status(self, signal_type: str | None = None) -> httpx.Response:
        params = {"signal_type": signal_type} if signal_type else {}
        return self.http.get("/m/index/status", params=params)


def _pdq(data: bytes) -> str:
    return next(v for v in pipeline.extract(data, ["pdq"]).vectors).hex()


@dataclass
class World:
    """The running service and the item ids its banks gave the fixture photos."""

    api: LiveApi
    items: dict[str, int] = field(default_factory=dict)
    private_item: int = 0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[World]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("hma") / "data",
                                    catalog_url=module_catalog_url) as running:
        admin = running.as_("admin")
        for name, kind, policy in (("SAMPLE_ADS", "ads", HASHES_ONLY),
                                   ("PRIVATE", "ads", {**HASHES_ONLY, "partner_lookup": False}),
                                   ("FAMILIES", "missing_person", {})):
            r = admin.post("/v1/banks", json={"name": name, "kind": kind, "policy": policy})
            assert r.status_code == 201, r.text
        out = World(running)
        for name in ADS_PHOTOS:
            r = running.as_("ingest").post("/v1/banks/SAMPLE_ADS/items", data={"label": f"ad-{name}"},
                                           files={"image": (name, (FIXTURES / name).read_bytes())})
            assert r.status_code == 201, r.text
            out.items[name] = r.json()["item"]
        r = admin.post("/v1/banks/PRIVATE/items", data={"label": "secret-private-ad"},
                       files={"image": ("c.png", (FIXTURES / "chelsea.png").read_bytes(), "image/png")})
        assert r.status_code == 201, r.text
        out.private_item = r.json()["item"]
        yield out


@pytest.fixture(scope="module")
def api(world: World) -> LiveApi:
    return world.api


def _client(api: LiveApi, role: str, **kw: bool) -> HmaClient:
    return HmaClient(api.url, api.keys[role], **kw)


def _hma_events(api: LiveApi) -> list:
    return [e for e in api.service.audit.events(limit=100_000) if e.action.startswith("hma.")]


def test_raw_lookup_answers_bank_content_ids_and_distances(api: LiveApi, world: World) -> None:
    hma = _client(api, "investigator")
    for name in ADS_PHOTOS:
        signal = _pdq((FIXTURES / name).read_bytes())
        r = hma.raw_lookup(signal)
        assert r.status_code == 200, r.text
        assert world.items[name] in r.json()["matches"]
        with_distance = hma.raw_lookup(signal, include_distance=True).json()["matches"]
        assert {"bank_content_id": world.items[name], "distance": "0"} in with_distance
        assert len(with_distance) == len(r.json()["matches"])
    chelsea = _pdq((FIXTURES / "chelsea.png").read_bytes())
    assert set(hma.raw_lookup(chelsea).json()["matches"]) == {
        world.items["chelsea.png"], world.private_item}
    assert hma.raw_lookup(chelsea, banks="SAMPLE_ADS").json()["matches"] == [world.items["chelsea.png"]]
    assert hma.raw_lookup(chelsea, banks="NON_EXISTENT_BANK").json() == {"matches": []}


def test_lookup_groups_matches_by_bank_and_finds_reposts(api: LiveApi, world: World) -> None:
    hma = _client(api, "admin")
    chelsea = _pdq((FIXTURES / "chelsea.png").read_bytes())
    r = hma.lookup(chelsea)
    assert r.status_code == 200, r.text
    assert r.json() == {"SAMPLE_ADS": [{"bank_content_id": world.items["chelsea.png"], "distance": "0"}],
                        "PRIVATE": [{"bank_content_id": world.private_item, "distance": "0"}]}
    assert set(hma.lookup(chelsea, banks="PRIVATE,NON_EXISTENT_BANK").json()) == {"PRIVATE"}
    img = photo("camera.png")
    repost = jpeg_bytes(img.resize((img.width // 2, img.height // 2)), 30)
    match = hma.lookup(_pdq(repost)).json()["SAMPLE_ADS"][0]
    assert match["bank_content_id"] == world.items["camera.png"]
    assert 0 < int(match["distance"]) <= 31
    assert hma.lookup("00" * 32).json() == {}  # far from everything: no match


def test_uploaded_photo_is_hashed_as_reunite_hashes_it(api: LiveApi, world: World) -> None:
    hma = _client(api, "partner")
    data = (FIXTURES / "coffee.png").read_bytes()
    r = hma.hash_file("coffee.png", data)
    assert r.status_code == 200, r.text
    assert r.json() == {"pdq": _pdq(data)}
    raw = hma.http.post("/h/hash", content=data, headers={"Content-Type": "image/png"})
    assert raw.json() == {"pdq": _pdq(data)}
    assert hma.http.post("/h/hash", params={"types": "pdq"}, files={"photo": ("c.png", data)}
                         ).json() == {"pdq": _pdq(data)}
    flat = hma.hash_file("flat.png", _flat_png())
    assert flat.json() == {"pdq": ""}  # HMA: no PDQ below quality 50
    looked_up = _client(api, "investigator").lookup_file("coffee.png", data)
    assert looked_up.status_code == 200, looked_up.text
    assert looked_up.json() == {"pdq": {"SAMPLE_ADS": [{"bank_content_id": world.items["coffee.png"],
                                                        "distance": "0"}]}}


def _flat_png() -> bytes:
    return png_bytes(Image.new("RGB", (64, 64), (128, 128, 128)))


def test_urls_are_never_fetched(api: LiveApi) -> None:
    hma = _client(api, "admin")
    for r in (hma.hash_url("http://127.0.0.1:1/x.png"),
              hma.http.get("/m/lookup", params={"url": "http://127.0.0.1:1/x.png"}),
              hma.http.post("/h/hash", params={"url": "http://127.0.0.1:1/x.png"},
                            files={"photo": ("x.png", b"")})):
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "url_not_supported"
        assert "upload" in r.json()["message"] and r.json()["message"] == r.json()["detail"]


def test_compare_answers_as_hma(api: LiveApi) -> None:
    hma = _client(api, "partner")
    r = hma.compare({"pdq": [SPECIMEN1, SPECIMEN2]})
    assert r.status_code == 200 and r.json() == {"pdq": [True, {"distance": 9}]}
    assert hma.compare({"pdq": [SPECIMEN1, "00" * 32]}).json()["pdq"][0] is False
    # HMA's malformed inputs, each a 400 with a message.
    for bad in (["banana"], {"pdq": "banana"}, {"pdq": []}, {"pdq": ["banana", "banana"]},
                {"pdq": [SPECIMEN1, SPECIMEN2, SPECIMEN1]}, {"banana": [SPECIMEN1, SPECIMEN2]},
                {"video_md5": ["a" * 32, "b" * 32]}):
        r = hma.compare(bad)
        assert r.status_code == 400, (bad, r.text)
        assert set(r.json()) == {"message", "error", "detail"}, bad
    huge = hma.compare({"x" * 100_000: [SPECIMEN1, SPECIMEN2]})
    assert huge.status_code == 400 and len(huge.text) < 500  # an error never echoes a huge name
    assert hma.http.post("/m/compare", content=b"{not json",
                         headers={"Content-Type": "application/json"}).status_code == 400


def test_index_status_per_signal_type(api: LiveApi) -> None:
    before = int(dt.datetime.now(dt.UTC).timestamp())
    r = _client(api, "admin").index_status()
    assert r.status_code == 200, r.text
    status = r.json()
    assert set(status) == {"pdq"} and status["pdq"]["present"] is True
    assert status["pdq"]["size"] == len(api.service.store.indexes.get(
        api.service.store.catalog.bank("SAMPLE_ADS").id, "pdq")) + 1 + _families_size(api)
    assert before - 3600 < status["pdq"]["built_to"] <= before + 5
    partner = _client(api, "partner").index_status("pdq").json()
    assert partner["pdq"]["size"] == status["pdq"]["size"] - 1  # PRIVATE is closed to partners
    unsupported = _client(api, "admin").index_status("video_md5")
    assert unsupported.status_code == 400 and "video_md5" in unsupported.json()["message"]


def _families_size(api: LiveApi) -> int:
    bank = api.service.store.catalog.bank("FAMILIES")
    return api.service.store.catalog.count_vectors(bank.id, "pdq")


def test_partner_sees_no_identities(api: LiveApi, world: World) -> None:
    partner = _client(api, "partner")
    chelsea = _pdq((FIXTURES / "chelsea.png").read_bytes())
    r = partner.lookup(chelsea)
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["SAMPLE_ADS"]  # PRIVATE does not allow partner lookups
    [match] = r.json()["SAMPLE_ADS"]
    content_id = match["bank_content_id"]
    assert content_id not in set(world.items.values()) | {world.private_item}
    assert 0 <= content_id < 2**53
    assert "ad-" not in r.text and "secret" not in r.text and "S-" not in r.text
    assert partner.raw_lookup(chelsea).json() == {"matches": [content_id]}  # stable
    assert partner.raw_lookup(chelsea, banks="PRIVATE").json() == {"matches": []}
    # The same subject as the opaque ref of /v1/match/hashes.
    hits = api.as_("partner").post("/v1/match/hashes", json={"hashes": {"pdq": chelsea}}).json()["hits"]
    ref = hits[0]["ref"]
    assert opaque_int(ref) == content_id
    bearer = HmaClient(api.url, api.keys["partner"], bearer=True)
    assert bearer.lookup(chelsea).json() == r.json()


def test_expired_consent_is_never_matched(api: LiveApi) -> None:
    face = png_bytes(photo("astronaut.png").crop((130, 20, 370, 260)).resize((160, 160)))
    record = consent_record("fam-1")
    r = api.as_("admin").post("/v1/banks/FAMILIES/subjects", data={"record": json.dumps(record)},
                              files=[("photos", ("p.png", face, "image/png"))])
    assert r.status_code == 201, r.text
    signal = _pdq(face)
    hma = _client(api, "investigator")
    found = hma.lookup(signal, banks="FAMILIES").json()
    assert [m["distance"] for m in found["FAMILIES"]] == ["0"]
    assert "fam-1" not in hma.lookup(signal).text
    with api.service.store.catalog.session() as s:
        subject = s.scalar(select(Subject).where(Subject.label == "fam-1"))
        subject.consent_expires = dt.datetime(2020, 1, 1)
    assert hma.lookup(signal, banks="FAMILIES").json() == {}
    assert hma.raw_lookup(signal, banks="FAMILIES").json() == {"matches": []}


def test_every_call_is_audited_without_the_hash(api: LiveApi) -> None:
    hma = _client(api, "partner")
    signal = _pdq((FIXTURES / "astronaut.png").read_bytes())
    calls = [lambda: hma.raw_lookup(signal), lambda: hma.lookup(signal),
             lambda: hma.lookup_file("a.png", (FIXTURES / "astronaut.png").read_bytes()),
             lambda: hma.raw_lookup("banana"), lambda: hma.compare({"pdq": [SPECIMEN1, SPECIMEN2]}),
             lambda: hma.hash_file("a.png", (FIXTURES / "astronaut.png").read_bytes()),
             lambda: hma.index_status()]
    actions = ["hma.raw_lookup", "hma.lookup", "hma.lookup", "hma.raw_lookup", "hma.compare",
               "hma.hash", "hma.index_status"]
    for call, action in zip(calls, actions, strict=True):
        before = len(_hma_events(api))
        call()
        events = _hma_events(api)
        assert len(events) == before + 1, action
        event = events[-1]
        assert (event.action, event.actor, event.role) == (action, "test-partner", "partner")
        assert signal not in json.dumps(event.to_json())
    lookups = [e for e in _hma_events(api) if e.action in ("hma.lookup", "hma.raw_lookup")][-4:]
    assert [e.result for e in lookups] == ["ok", "ok", "ok", "rejected"]
    assert all(e.object.startswith("hashes:") for e in lookups)
    assert lookups[0].detail["candidates"] == 1


def test_unknown_signal_type_and_malformed_hash_answer_hma_400s(api: LiveApi) -> None:
    hma = _client(api, "investigator")
    unknown = hma.raw_lookup(SPECIMEN1, signal_type="banana")
    assert unknown.status_code == 400
    assert unknown.json() == {"message": "No such SignalType 'banana'", "error": "unknown_signal_type",
                              "detail": "No such SignalType 'banana'"}
    disabled = hma.lookup("a" * 32, signal_type="video_md5")
    assert disabled.status_code == 400 and disabled.json()["error"] == "unsupported_signal_type"
    assert disabled.json()["message"].startswith("SignalType 'video_md5' is not enabled")
    for bad in ("banana", "ab" * 31, "zz" * 32):
        r = hma.raw_lookup(bad)
        assert r.status_code == 400, r.text
        assert r.json()["message"].startswith("invalid signal") and r.json()["error"] == "bad_hash"
    missing = hma.http.get("/m/lookup", params={"signal": SPECIMEN1})
    assert missing.status_code == 400
    assert missing.json()["message"] == "Either url or both signal and signal_type are required"
    assert hma.http.get("/m/raw_lookup", params={"signal_type": "pdq"}).status_code == 422
    video = hma.hash_file("v.mp4", b"\x00\x00\x00\x18ftypmp42", field="video")
    assert video.status_code == 400 and video.json()["message"] == "content_type video is disabled"
    none = hma.http.post("/h/hash", data={"photo": "not a file"})
    assert none.status_code == 400 and none.json()["message"].startswith("Missing multipart")
    corrupt = hma.hash_file("x.png", b"not an image")
    assert corrupt.status_code == 415 and "message" in corrupt.json()


def test_keys_are_required_and_roles_enforced(api: LiveApi) -> None:
    anonymous = httpx.get(f"{api.url}/m/raw_lookup", params={"signal": SPECIMEN1, "signal_type": "pdq"})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert "Bearer" in anonymous.json()["detail"]
    wrong = HmaClient(api.url, "rk_" + "x" * 43, bearer=True).raw_lookup(SPECIMEN1)
    assert wrong.status_code == 401
    assert _client(api, "ingest").raw_lookup(SPECIMEN1).status_code == 403
    assert _client(api, "reviewer").hash_file("a.png", b"x").status_code == 403
