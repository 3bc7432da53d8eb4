"""A key's last use: recorded when it authenticates, written at most once a minute, shown by `keys list`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import catalog_of, run_reunite
from sqlalchemy import select

from api.api_keys import LAST_USE_RESOLUTION, ApiKey, authenticate, create_key, note_use
from indexer.store.catalog import Catalog

# Each test runs on SQLite and on PostgreSQL (every data folder it makes gets its own database).
pytestmark = pytest.mark.usefixtures("every_folder_on_backend")


def _row(catalog: Catalog, name: str) -> ApiKey:
    with catalog.session() as s:
        return s.scalar(select(ApiKey).where(ApiKey.name == name))


def test_authentication_records_the_last_use_once_a_minute(tmp_path: Path) -> None:
    catalog = Catalog.open(tmp_path / "data", catalog_of(tmp_path / "data"))
    key = create_key(catalog, "investigator", "inv")
    assert _row(catalog, "inv").last_used_at is None
    assert authenticate(catalog, key) is not None
    first = _row(catalog, "inv").last_used_at
    assert first is not None
    assert authenticate(catalog, key) is not None  # within the minute: no write
    assert _row(catalog, "inv").last_used_at == first
    assert authenticate(catalog, "rk_not-a-key") is None
    row = _row(catalog, "inv")
    assert note_use(row, first + LAST_USE_RESOLUTION / 2) is False
    assert note_use(row, first + LAST_USE_RESOLUTION) is True
    assert row.last_used_at == first + LAST_USE_RESOLUTION


def test_keys_list_shows_the_last_use(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = run_reunite("keys", "create", "--role", "admin", "--name", "ops", data=data, check=True)
    assert made.stdout.splitlines()[0] == ("created an admin key named 'ops'; store it now, it is not "
                                           "shown again:")
    made = run_reunite("keys", "create", "--role", "investigator", "--name", "inv", data=data, check=True)
    assert made.stdout.startswith("created an investigator key named 'inv'")  # issue 15: not "a investigator"
    key = run_reunite("keys", "create", "--role", "ingest", "--name", "crawler", data=data,
                      check=True).stdout.splitlines()[-1]
    catalog = Catalog.open(data, catalog_of(data))
    assert authenticate(catalog, key) is not None
    used = _row(catalog, "crawler").last_used_at
    catalog.engine.dispose()
    rows = {r.split("\t")[0]: r.split("\t") for r in
            run_reunite("keys", "list", data=data, check=True).stdout.splitlines()[1:]}
    assert rows["ops"][4] == "never"
    assert rows["crawler"][4] == f"{used:%Y-%m-%d %H:%M}"
    assert dt.datetime.strptime(rows["crawler"][3], "%Y-%m-%d %H:%M") <= used
