"""``reunite watches``: narrowing a watcher from the command line (issue 16 leftover).

End to end with real CLI subprocesses: ads indexed into two banks are both
checked against an enrolled person; after the person's bank is narrowed to
one ads bank, a new crawl into each is checked only where it is watched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import catalog_of, jpeg_bytes, photo, run_reunite

from api.audit import AuditEvent
from indexer.store.store import Store
from tests.test_watch import ENV, KEY, _csv, _enroll_person

# Each test runs on SQLite and on PostgreSQL (every data folder it makes gets its own database).
pytestmark = pytest.mark.usefixtures("every_folder_on_backend")

CHECKED = "watch: 1 ads checked against missing"


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REUNITE_ENCRYPTION_KEY", KEY)


def _ads(tmp: Path, name: str, image: str) -> Path:
    path = tmp / f"{name}.jpg"
    path.write_bytes(jpeg_bytes(photo(image), 75))
    return _csv(tmp / f"{name}.csv", [{"path": str(path), "label": name}])


def _index(manifest: Path, bank: str, data: Path) -> str:
    done = run_reunite("index", str(manifest), "--bank", bank, "--quiet", "--no-link", data=data, env=ENV)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_narrowing_a_watch_from_the_cli_checks_only_the_watched_bank(
        tmp_path: Path, data_dir: Path, env_key: None) -> None:
    assert _enroll_person(tmp_path, data_dir).returncode == 0
    assert CHECKED in _index(_ads(tmp_path, "one", "brick.png"), "ads-1", data_dir)
    assert CHECKED in _index(_ads(tmp_path, "two", "brick.png"), "ads-2", data_dir)

    narrowed = run_reunite("watches", "missing", "--ads", "ads-1", "--ads", "ads-1", data=data_dir, env=ENV)
    assert narrowed.returncode == 0, narrowed.stderr
    assert "missing watches ads-1 (now: ads-1)" in narrowed.stdout
    assert CHECKED in _index(_ads(tmp_path, "three", "camera.png"), "ads-1",
                                                            data_dir)
    assert "no bank watches this bank" in _index(_ads(tmp_path, "four", "camera.png"), "ads-2", data_dir)

    off = run_reunite("watches", "missing", "--none", data=data_dir, env=ENV)
    assert off.returncode == 0 and "(now: none)" in off.stdout
    back = run_reunite("watches", "missing", "--all", data=data_dir, env=ENV)
    assert back.returncode == 0 and "(now: ads-1, ads-2)" in back.stdout
    # Watching everything again catches up on the ad not checked while narrowed ("four").
    assert "watch: 2 ads checked against missing" in _index(_ads(tmp_path, "five", "coffee.png"), "ads-2",
                                                            data_dir)

    for bad, why in [(("nobody", "--all"), "no bank named 'nobody'"),
                     (("ads-1", "--none"), "policy 'watches' is for"),
                     (("missing",), "give exactly one of"),
                     (("missing", "--all", "--none"), "give exactly one of")]:
        refused = run_reunite("watches", *bad, data=data_dir, env=ENV)
        assert refused.returncode == 2 and why in refused.stderr, (bad, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1

    with Store(data_dir, catalog_of(data_dir)).catalog.session() as s:
        rows = s.query(AuditEvent).filter(AuditEvent.action == "bank.watches").order_by(AuditEvent.seq)
        watches = [(e.object, e.result, e.detail.get("error")) for e in rows]
    assert watches == [("bank:missing", "ok", None)] * 3 + [("bank:nobody", "rejected", "unknown_bank"),
                                                           ("bank:ads-1", "rejected", "bad_policy")]
