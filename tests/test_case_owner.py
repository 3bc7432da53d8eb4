"""``case_owner`` at enrolment (issue 16 leftover): the owner is alerted without a ``cases owner`` step.

HTTP: a subject enrolled with ``case_owner`` is in a case of that owner, so its
confirmed match (two real reviewers) is an alert the owner reads with its own
key. CLI: ``reunite enroll --case-owner`` does the same for every subject of the
manifest. A bad owner is refused before anything is stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from api_support import consent_record, encryption_key, live_api
from conftest import jpeg_bytes, png_bytes
from PIL import ImageEnhance
from test_alerts import confirm_twice, face, match

from indexer.store.store import Store
from matcher.review.cases import Cases
from tests.conftest import run_reunite
from tests.test_watch import ENV, KEY, _enroll_person

OWNER = "family-liaison"


def _enrol(api, label: str, **extra: str):  # noqa: ANN001, ANN202 - LiveApi, Response
    record = {**consent_record(label), **extra}
    return api.as_("admin").post("/v1/banks/families/subjects", data={"record": json.dumps(record)},
                                 files=[("photos", ("p.png", png_bytes(face()), "image/png"))])


def test_http_enrolment_with_a_case_owner_alerts_that_owner(tmp_path: Path) -> None:
    with encryption_key(), live_api(tmp_path / "data") as api:
        assert api.as_("admin").post("/v1/banks", json={"name": "families", "kind": "missing_person"}
                                     ).status_code == 201
        bad = _enrol(api, "mp-0", case_owner="team:")
        assert bad.status_code == 422 and "record.case_owner" in bad.json()["detail"], bad.text
        assert api.as_("admin").get("/v1/banks/families/subjects").json()["subjects"] == []

        done = _enrol(api, "mp-1", case_owner=OWNER)
        assert done.status_code == 201, done.text
        pseudonym = done.json()["subject"]["pseudonym"]
        [case] = api.service.alerts.cases.list(owned_by=OWNER)
        assert case.subjects == [pseudonym] and case.owner == OWNER

        owner_key = api.key("investigator", OWNER)
        cid = match(api, jpeg_bytes(ImageEnhance.Brightness(face(220)).enhance(1.1), 83))
        confirm_twice(api, api.key("reviewer", "second-reviewer"), cid)
        [alert] = [a for a in api.service.alerts.all_views() if a.candidate_id == cid]
        assert alert.case_ref == case.ref
        with api.client(owner_key) as owner:
            assert owner.get(f"/v1/alerts/{alert.id}").status_code == 200
        assert api.as_("investigator").get(f"/v1/alerts/{alert.id}").status_code == 404


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REUNITE_ENCRYPTION_KEY", KEY)


def test_cli_enroll_with_a_case_owner_puts_the_subjects_in_its_case(
        tmp_path: Path, data_dir: Path, env_key: None) -> None:
    bad = _enroll_person(tmp_path, data_dir, "--case-owner", "team:")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --case-owner:"), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert Store(data_dir).catalog.bank("missing") is None  # refused before anything was stored

    done = _enroll_person(tmp_path, data_dir, "--case-owner", OWNER)
    assert done.returncode == 0, done.stderr
    listed = [json.loads(line) for line in run_reunite("cases", "list", data=data_dir, env=ENV,
                                                       check=True).stdout.splitlines()]
    assert [(c["owner"], len(c["subjects"])) for c in listed] == [(OWNER, 1)]
    again = _enroll_person(tmp_path, data_dir, "--case-owner", OWNER)  # the same owner: kept, no new case
    assert again.returncode == 0, again.stderr
    other = _enroll_person(tmp_path, data_dir, "--case-owner", "someone-else")
    assert other.returncode == 2 and "another owner" in other.stderr
    assert [c.owner for c in Cases(Store(data_dir).catalog).list()] == [OWNER]
