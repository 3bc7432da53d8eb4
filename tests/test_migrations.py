"""Schema migrations: a new catalog equals the models, an old folder upgrades in place, a newer is refused.

The old folder is ``fixtures/legacy/data-0.1.0.tar.gz``, written by release
0.1.0's own code (fixtures/legacy/make_folder.py, run at main 1803900 before
the catalog had migrations): opening it with this release must keep every
row, and everything in it must still work: the audit chain verifies, the API
keys issued then still sign in, the confirmed decision and its sealed note
read back, the enrolled subject's sealed personal fields decrypt, the ads
still match.
"""

from __future__ import annotations

import json
import runpy
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from api_support import encryption_key, live_api
from conftest import FIXTURES, ROOT, catalog_env, run_reunite
from sqlalchemy import create_engine, text

from indexer.store import schema
from indexer.store.catalog import Catalog, sqlite_url

LEGACY = FIXTURES / "legacy" / "data-0.1.0.tar.gz"
LEGACY_KEY = "BH_afC6pHd2SIx_vekNT7kAy78XW5Pc_yvq1dkpuLF4="  # fixtures/legacy/make_folder.py
LEGACY_NAME = "Legacy Example Person"
LEGACY_NOTE = "same wallpaper as the reference room"


def _legacy_folder(tmp_path: Path) -> Path:
    with tarfile.open(LEGACY) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "data"


def _row_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}


def _schema_differences(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, schema.declared_metadata())
    finally:
        engine.dispose()


def test_a_new_catalog_is_at_head_and_matches_the_models(tmp_path: Path, catalog_url: str | None) -> None:
    # A model changed without a revision (or a revision that differs from the models) fails here.
    catalog = Catalog.open(tmp_path / "data", catalog_url)
    url = catalog_url or sqlite_url(tmp_path / "data")
    with catalog.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
    catalog.engine.dispose()
    assert _schema_differences(url) == []


def test_the_head_read_from_the_revision_files_is_alembic_s(tmp_path: Path) -> None:
    """Every open compares the catalog's version with :func:`schema.head`, read from the revision
    files without Alembic: it must name what Alembic's own script directory names."""
    scripts = schema._scripts()
    graph = schema.revision_graph()
    assert graph is not None, "a revision file no longer states revision / down_revision as literals"
    assert schema.head() == scripts.get_current_head()
    assert set(graph) == {rev.revision for rev in scripts.walk_revisions()}
    for rev in scripts.walk_revisions():
        downs = rev.down_revision
        assert graph[rev.revision] == (() if downs is None else (downs,) if isinstance(downs, str)
                                       else tuple(downs))
    assert not schema.known("9999") and schema.known(schema.head())
    engine = create_engine(sqlite_url(tmp_path))
    try:
        with engine.connect() as conn:
            assert schema.stored_revisions(conn) is None  # a new file: no version table yet
        Catalog.open(tmp_path).engine.dispose()
        with engine.connect() as conn:
            assert schema.stored_revisions(conn) == [schema.head()] == [schema.current(conn)]
    finally:
        engine.dispose()


def test_the_sqlite_snapshot_is_what_the_revisions_make(tmp_path: Path) -> None:
    """A new SQLite catalog is made from indexer/store/migrations/sqlite_head.sql, not by Alembic:
    that file must hold exactly the statements the revisions produce at head (a revision added
    without `python -m indexer.store.schema --sqlite-snapshot` fails here), so that a catalog made
    from it holds the same schema, statement for statement, as one Alembic made."""
    revision, statements = schema.sqlite_snapshot()
    assert revision == schema.head() and statements, \
        "sqlite_head.sql is stale: run python -m indexer.store.schema --sqlite-snapshot"
    by_alembic = tmp_path / "alembic.sqlite"
    engine = create_engine(f"sqlite:///{by_alembic}")
    try:
        with schema._schema_lock(engine) as conn:
            from alembic import command
            command.upgrade(schema.config(conn), "head")
    finally:
        engine.dispose()
    Catalog.open(tmp_path / "data").engine.dispose()
    made = schema.snapshot_statements(sqlite_url(tmp_path / "data"))
    # The same statements (the revisions create one table's indexes in no fixed order).
    by_revisions = schema.snapshot_statements(f"sqlite:///{by_alembic}")
    assert sorted(made) == sorted(by_revisions) == sorted(statements), \
        "sqlite_head.sql is stale: run python -m indexer.store.schema --sqlite-snapshot"
    with sqlite3.connect(tmp_path / "data" / "catalog.sqlite") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(schema.head(),)]
        [(identity,)] = conn.execute("SELECT value FROM catalog_meta WHERE name = 'catalog_id'").fetchall()
    assert len(identity) == 32 and (tmp_path / "data" / "catalog-id").read_text().strip() == identity


def test_a_new_sqlite_catalog_is_made_without_importing_alembic(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from indexer.store.catalog import Catalog; "
            "Catalog.open(Path(sys.argv[1])).ensure_bank('ads', 'ads'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    engine = create_engine(sqlite_url(tmp_path / "data"))
    try:
        with engine.connect() as conn:
            assert schema.current(conn) == schema.head()
    finally:
        engine.dispose()


def test_the_last_release_s_folder_upgrades_in_place_without_loss(tmp_path: Path) -> None:
    data = _legacy_folder(tmp_path)
    facts = json.loads((data / "legacy-facts.json").read_text(encoding="utf-8"))
    before = _row_counts(data / "catalog.sqlite")
    assert "alembic_version" not in before and before["audit_events"] == facts["audit_events"]
    assert run_reunite("migrate", "--check", data=data).returncode == 1  # an upgrade is due

    Catalog.open(data).engine.dispose()  # the upgrade, on open
    after = _row_counts(data / "catalog.sqlite")
    assert {t: after[t] for t in before} == before  # every row of every table kept
    assert after["alembic_version"] == 1 and "scene_features" in after  # the table 0.1.0 lacked
    assert after["catalog_meta"] == 1 and (data / "catalog-id").is_file()  # revision 0002 ran too

    with encryption_key(LEGACY_KEY), live_api(data) as api:
        assert api.service.audit.verify().ok
        # The keys issued by 0.1.0 still sign in; what they stored reads back.
        reviewer = api.client(facts["keys"]["reviewer"])
        cand = reviewer.get(f"/v1/review/candidates/{facts['candidate']}")
        assert cand.status_code == 200, cand.text
        assert cand.json()["state"] == "confirmed"
        assert [d["note"] for d in cand.json()["decisions"]] == [LEGACY_NOTE]
        subject = api.client(facts["keys"]["admin"]).get(f"/v1/subjects/{facts['pseudonym']}")
        assert subject.status_code == 200, subject.text
        personal = subject.json()["personal"]  # sealed by 0.1.0 under the key, opened now
        assert personal["name"] == LEGACY_NAME and personal["case_ref"] == "CASE-LEGACY-1"
        ads = api.client(facts["keys"]["admin"]).get("/v1/banks/ads")
        assert ads.status_code == 200 and ads.json()["items"] == 3, ads.text
        # An ad stored by 0.1.0 is found again (its indexes were written by 0.1.0 too).
        maker = runpy.run_path(str(FIXTURES / "legacy" / "make_folder.py"))
        query = maker["jpeg"](maker["picture"](1))
        found = api.client(facts["keys"]["investigator"]).post(
            "/v1/match", data={"banks": "ads"}, files={"image": ("q.jpg", query, "image/jpeg")})
        assert found.status_code == 200 and found.json()["candidates"][0]["decision"] == "match", found.text
    sealed = (data / "catalog.sqlite").read_bytes()
    assert LEGACY_NAME.encode() not in sealed and LEGACY_NOTE.encode() not in sealed

    check = run_reunite("migrate", "--check", data=data)
    assert check.returncode == 0 and schema.head() in check.stdout, check.stdout + check.stderr
    verify = run_reunite("audit", "verify", data=data, env={"REUNITE_ENCRYPTION_KEY": LEGACY_KEY})
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr


def test_reunite_migrate_upgrades_and_then_has_nothing_to_do(tmp_path: Path) -> None:
    data = _legacy_folder(tmp_path)
    first = run_reunite("migrate", data=data)
    assert first.returncode == 0 and f"none -> {schema.head()}" in first.stdout, first.stderr
    again = run_reunite("migrate", data=data)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr


def _stamp_future(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d_from_a_newer_release'"))
    engine.dispose()


def test_a_catalog_from_a_newer_release_is_refused_and_left_alone(tmp_path: Path,
                                                                  catalog_url: str | None) -> None:
    data = tmp_path / "data"
    catalog = Catalog.open(data, catalog_url)
    catalog.ensure_bank("ads", "ads")
    catalog.engine.dispose()
    url = catalog_url or sqlite_url(data)
    _stamp_future(url)
    with pytest.raises(schema.CatalogTooNew, match="f00d_from_a_newer_release"):
        Catalog.open(data, catalog_url)
    check = run_reunite("migrate", "--check", data=data, env=catalog_env(catalog_url))
    assert check.returncode == 2 and "newer than this release" in check.stderr, check.stderr
    done = run_reunite("keys", "create", "--role", "admin", "--name", "x", data=data,
                       env=catalog_env(catalog_url))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: the catalog is at schema revision f00d_from_a_newer_release")
    assert len(done.stderr.strip().splitlines()) == 1
    engine = create_engine(url)
    with engine.connect() as conn:  # nothing was written: no key, the version as the newer release left it
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == \
            "f00d_from_a_newer_release"
        assert conn.execute(text("SELECT COUNT(*) FROM api_keys")).scalar_one() == 0
    engine.dispose()


OPENER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from indexer.store.catalog import Catalog
    go = Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.002)
    catalog = Catalog.open(Path(sys.argv[1]), sys.argv[2] or None)
    catalog.ensure_bank("ads", "ads")
    print("opened")
""")


def test_processes_opening_one_new_catalog_at_once_migrate_it_once(tmp_path: Path,
                                                                   catalog_url: str | None) -> None:
    data = tmp_path / "data"
    data.mkdir()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(data), catalog_url or "", str(go)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-2000:] for o in outs]
    engine = create_engine(catalog_url or sqlite_url(data))
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions == [schema.head()]
        assert conn.execute(text("SELECT COUNT(*) FROM banks")).scalar_one() == 1
    engine.dispose()


def test_a_data_folder_is_refused_with_another_catalog(tmp_path: Path, catalog_url: str | None) -> None:
    """A folder's index files are trusted by revision number: with another catalog they would lie."""
    from indexer.store.catalog import FolderOfAnotherCatalog

    data = tmp_path / "data"
    Catalog.open(data, catalog_url).engine.dispose()
    other = tmp_path / "other.sqlite"
    with pytest.raises(FolderOfAnotherCatalog, match="belongs to another catalog"):
        Catalog.open(data, f"sqlite:///{other}")
    done = run_reunite("keys", "create", "--role", "admin", "--name", "x", data=data,
                       env={"REUNITE_CATALOG_URL": f"sqlite:///{other}"})
    assert done.returncode == 2 and done.stderr.startswith("error: the data folder"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    Catalog.open(data, catalog_url).engine.dispose()  # its own catalog still opens it
