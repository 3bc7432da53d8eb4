"""Choosing the catalog: ``--catalog-url`` / ``$REUNITE_CATALOG_URL`` on the real command, and bad URLs.

The folder keeps what is not catalog (indexes, photos, keys); with a URL no
``catalog.sqlite`` appears in it. A URL that is not one, or a database that
cannot be reached, is one line on stderr and exit 2, like any bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FIXTURES, PHOTOS, run_reunite
from pg_server import PostgresServer


def test_the_command_takes_its_catalog_from_the_flag_or_the_environment(
        tmp_path: Path, pg_server: PostgresServer) -> None:
    url = pg_server.create_database()
    data = tmp_path / "data"
    crawl = tmp_path / "crawl.csv"
    crawl.write_text("path,label\n" + "".join(f"{FIXTURES / p},{Path(p).stem}\n" for p in PHOTOS[:3]),
                     encoding="utf-8")
    done = run_reunite("--catalog-url", url, "index", str(crawl), "--bank", "ads", "--quiet", "--no-link",
                       "--signals", "hashes", data=data)
    assert done.returncode == 0, done.stderr
    assert not (data / "catalog.sqlite").exists() and (data / "catalog-id").is_file()
    plain = url.replace("postgresql+psycopg://", "postgresql://")  # the driver is psycopg 3 either way
    listed = run_reunite("banks", "--json", data=data, env={"REUNITE_CATALOG_URL": plain})
    assert listed.returncode == 0, listed.stderr
    assert [(b["name"], b["items"]) for b in json.loads(listed.stdout)] == [("ads", 3)]
    found = run_reunite("--catalog-url", url, "match", str(FIXTURES / PHOTOS[0]), "--bank", "ads", "--json",
                        data=data)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout.splitlines()[0])["candidates"][0]["label"] == Path(PHOTOS[0]).stem
    # Without the URL the folder has no catalog of its own: it is refused, not silently emptied.
    alone = run_reunite("keys", "create", "--role", "admin", "--name", "x", data=data)
    assert alone.returncode == 2 and "belongs to a catalog elsewhere" in alone.stderr, alone.stderr
    assert not (data / "catalog.sqlite").exists()  # and no empty catalog was made beside its files
    pg_server.drop_database(url)


def test_a_bad_or_unreachable_catalog_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for url, says in (("not-a-url", "not a usable database URL"),
                      ("nosuchdb://x/y", "not a usable database URL"),
                      ("postgresql+psycopg://postgres@127.0.0.1:1/none", "cannot reach the catalog")):
        done = run_reunite("--catalog-url", url, "keys", "create", "--role", "admin", "--name", "x",
                           data=data)
        assert done.returncode == 2, (url, done.stdout, done.stderr)
        assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, (url, done.stderr)


def test_a_label_longer_than_its_column_is_refused_row_by_row_on_both(
        tmp_path: Path, catalog_url: str | None) -> None:
    """PostgreSQL enforces VARCHAR lengths where SQLite keeps anything: the rule is the same on both."""
    from conftest import bind_catalog, jpeg_bytes, tiles

    data = tmp_path / "data"
    bind_catalog(data, catalog_url)
    for n, tile in enumerate(tiles(3, seed=8)):
        (tmp_path / f"{n}.jpg").write_bytes(jpeg_bytes(tile))
    long_label = "x" * 301
    (tmp_path / "crawl.csv").write_text(f"path,label\n0.jpg,ad-0\n1.jpg,{long_label}\n2.jpg,ad-2\n",
                                        encoding="utf-8")
    done = run_reunite("index", str(tmp_path / "crawl.csv"), "--bank", "ads", "--signals", "hashes",
                       "--quiet", "--no-link", data=data)
    assert done.returncode == 1, done.stderr  # finished, one row left out: incomplete
    assert "skipped 1.jpg: the label has 301 characters, at most 300" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("incomplete: 1 of 3 images failed (1 label_too_long)")
    listed = run_reunite("banks", "--json", data=data)
    assert [(b["name"], b["items"]) for b in json.loads(listed.stdout)] == [("ads", 2)], listed.stderr
