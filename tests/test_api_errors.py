"""Every error the API promises, in the one JSON shape, and no half-written state after one."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import LiveApi, consent_record, encryption_key, live_api, no_encryption_key, reunite
from conftest import photo, png_bytes
from PIL import Image
from sqlalchemy import func, select

from api.http.app import create_app
from indexer.crypto import MissingKey
from indexer.store.catalog import Item, Subject

LIMIT = 300_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("errors") / "data",
                                    catalog_url=module_catalog_url,
                                    max_upload_bytes=LIMIT) as running:
        admin = running.as_("admin")
        assert admin.post("/v1/banks", json={"name": "ads", "kind": "ads",
                                             "policy": {"signals": ["hashes"]}}).status_code == 201
        assert admin.post("/v1/banks", json={"name": "mp", "kind": "missing_person"}).status_code == 201
        yield running


def _error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and isinstance(body["detail"], str) and body["detail"]
    if code:
        assert body["error"] == code, body


def _ingest(api: LiveApi, data: bytes, name: str = "x.png") -> httpx.Response:
    return api.as_("ingest").post("/v1/banks/ads/items", files={"image": (name, data, "image/png")})


def test_auth_errors(api: LiveApi) -> None:
    _error(api.as_(None).get("/v1/banks"), 401, "unauthorized")
    _error(api.as_("partner").get("/v1/banks"), 403, "forbidden")


def test_not_found(api: LiveApi) -> None:
    _error(api.as_("admin").get("/v1/banks/nope"), 404, "bank_not_found")
    _error(api.as_("admin").get("/v1/no/such/route"), 404, "not_found")
    _error(api.as_("admin").get("/v1/subjects/S-1234"), 404, "subject_not_found")


def test_conflicts(api: LiveApi) -> None:
    admin = api.as_("admin")
    _error(admin.post("/v1/banks", json={"name": "ads", "kind": "ads"}), 409, "bank_exists")
    _error(admin.post("/v1/banks", json={"name": "ads", "kind": "venue"}), 409, "bank_exists")
    _error(_ingest_into(api, "mp"), 409, "wrong_bank_kind")


def _ingest_into(api: LiveApi, bank: str) -> httpx.Response:
    return api.as_("admin").post(f"/v1/banks/{bank}/items",
                                 files={"image": ("a.png", png_bytes(photo("brick.png").resize((64, 64))),
                                                  "image/png")})


def test_bad_uploads(api: LiveApi) -> None:
    _error(_ingest(api, b"<html>not an image</html>", "x.jpg"), 415, "unsupported_image")
    good = png_bytes(photo("camera.png").resize((80, 80)))
    _error(_ingest(api, good[: len(good) // 2]), 422, "corrupt_image")
    _error(_ingest(api, b"\x00" * (LIMIT + 1)), 413, "too_large")
    # A small file that declares a huge picture (a decompression bomb) is refused too.
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, "PNG")
    _error(_ingest(api, buf.getvalue()), 413, "image_too_large")
    broken = api.as_("ingest").post("/v1/banks/ads/items", content=b"--xyz\r\nbroken",
                                    headers={"content-type": "multipart/form-data"})
    _error(broken, 400, "bad_request")


def test_validation_errors_use_the_same_shape(api: LiveApi) -> None:
    admin = api.as_("admin")
    _error(admin.post("/v1/banks", json={"name": "", "kind": "ads"}), 422, "validation_error")
    _error(admin.post("/v1/banks", content=b"{not json", headers={"content-type": "application/json"}),
           422, "validation_error")
    _error(admin.post("/v1/banks", json={"name": "x", "kind": "ads", "policy": {"signals": ["nope"]}}),
           422, "unknown_signal")
    _error(api.as_("ingest").post("/v1/banks/ads/items"), 422, "validation_error")
    _error(api.as_("partner").post("/v1/match/hashes", json={"hashes": {"pdq": "zz"}}), 422, "bad_hash")
    _error(api.as_("reviewer").get("/v1/review/candidates", params={"limit": 0}), 422)


def test_unknown_fields_are_refused_by_name(api: LiveApi) -> None:
    png = png_bytes(photo("coffee.png").resize((64, 64)))
    image = {"image": ("q.png", png, "image/png")}
    photos = {"photos": ("p.png", png, "image/png")}
    record = json.dumps(consent_record("typo"))
    before = _counts(api)
    refused = [  # each once with a typo'd form field, as `curl -F bank=missing` sends it
        api.as_("investigator").post("/v1/match", data={"bank": "missing"}, files=image),
        api.as_("ingest").post("/v1/banks/ads/items", data={"labels": "ad-1"}, files=image),
        api.as_("ingest").post("/v1/banks/ads/items/batch", data={"record": "[]"},
                               files={"images": ("q.png", png, "image/png")}),
        api.as_("admin").post("/v1/banks/mp/subjects", data={"record": record, "note": "x"}, files=photos),
        api.as_("admin").post("/v1/subjects/S-0000/photos", data={"label": "x"}, files=photos),
    ]
    names = ["bank", "labels", "record", "note", "label"]
    for r, name in zip(refused, names, strict=True):
        _error(r, 422, "unknown_field")
        assert r.json()["detail"] == f"unknown field(s): {name}"
    in_query = api.as_("investigator").post("/v1/match", params={"banks": "ads", "top": "3"}, files=image)
    _error(in_query, 422, "unknown_field")
    assert in_query.json()["detail"] == "unknown field(s): banks, top"
    assert _counts(api) == before
    # who may not call the route hears that first, not which fields it takes
    _error(api.as_(None).post("/v1/match", data={"bank": "missing"}, files=image), 401, "unauthorized")
    declared = api.as_("investigator").post("/v1/match", data={"banks": "ads", "top": "2"}, files=image)
    assert declared.status_code == 200, declared.text


def test_a_refused_enrollment_leaves_nothing_behind(api: LiveApi) -> None:
    admin = api.as_("admin")
    good = png_bytes(photo("astronaut.png").resize((96, 96)))
    files = [("photos", ("a.png", good, "image/png")), ("photos", ("b.png", b"GIF89a-broken", "image/gif"))]
    before = _counts(api)
    r = admin.post("/v1/banks/mp/subjects", data={"record": json.dumps(consent_record("half"))}, files=files)
    assert r.status_code in (415, 422), r.text
    expired = {**consent_record("late"), "consent_date": "2020-01-01", "consent_expires": "2021-01-01"}
    _error(admin.post("/v1/banks/mp/subjects", data={"record": json.dumps(expired)},
                      files=files[:1]), 422, "consent_refused")
    _error(admin.post("/v1/banks/mp/subjects", data={"record": json.dumps({"label": "x", "extra": 1})},
                      files=files[:1]), 422, "validation_error")
    assert _counts(api) == before


def _counts(api: LiveApi) -> tuple[int, int, int]:
    with api.service.store.catalog.session() as s:
        subjects = int(s.scalar(select(func.count(Subject.id))) or 0)
        items = int(s.scalar(select(func.count(Item.id))) or 0)
    photos = sum(1 for p in (api.data_dir / "photos").rglob("*") if p.is_file()) \
        if (api.data_dir / "photos").exists() else 0
    return subjects, items, photos


def test_the_service_refuses_to_start_without_the_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with encryption_key():
        create_app(data).state.service.store.catalog.ensure_bank("families", "missing_person")
    with no_encryption_key():
        with pytest.raises(MissingKey, match="REUNITE_ENCRYPTION_KEY is not set"):
            create_app(data)
        done = reunite("serve", "--port", "1", data=data, env={"REUNITE_ENCRYPTION_KEY": ""})
    assert done.returncode == 2
    assert "refusing to start" in done.stderr and "families" in done.stderr
