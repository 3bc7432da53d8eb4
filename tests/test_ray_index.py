"""`reunite index ... --engine ray` on a real two-node Ray cluster gives what the worker pool gives.

The cluster (tests/ray_cluster.py) is one for the run, on the loopback of its own
network namespace; `reunite` runs there too. Every Ray run is compared with a
`--workers 2` run of the same crawl: the same ads, the same sha256 and the same
stored signal vectors, the same failures; and the run's report names the Ray
nodes that extracted the images: both did work.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from tests.conftest import FIXTURES, ROOT, run_reunite, tiles
from tests.test_cli_startup import imported
from tests.test_warc_ingest import write_crawl

SIGNALS = "hashes"
WARC_FIELDS = ("url", "site", "posted_at", "warc_record_id")


def in_cluster(cluster, *args: str, data: Path, env: dict[str, str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real `reunite` command, run inside the cluster's network namespace."""
    cmd = [*cluster.enter(), sys.executable, "-m", "api.cli", "--data", str(data), *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled",
                               **(env or {})})
    if check and done.returncode != 0:
        raise AssertionError(f"reunite {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n"
                             f"{done.stderr}")
    return done


def catalog(data: Path) -> dict[tuple[str, str], tuple[dict, list]]:
    """(ad id, sha256) -> (the crawl's fields, every stored vector as (signal, bytes)) of a bank."""
    from sqlalchemy import select

    from indexer.store.catalog import Item, Subject, Vector
    from indexer.store.store import Store

    out = {}
    with Store(data).catalog.session() as s:
        rows = s.execute(select(Item, Subject).join(Subject, Item.subject_id == Subject.id)).all()
        for item, subject in rows:
            vectors = sorted((v.signal, bytes(v.data)) for v in
                             s.scalars(select(Vector).where(Vector.item_id == item.id)))
            fields = {k: item.attributes[k] for k in WARC_FIELDS if k in item.attributes}
            out[(subject.label, item.sha256)] = (fields, vectors)
    return out


def report_of(data: Path) -> dict:
    """The newest run report of the data folder."""
    return json.loads(sorted((data / "reports").glob("index-*.json"))[-1].read_text())


def index_both(cluster, source: Path, root: Path, code: int = 0) -> tuple[Path, Path, str]:
    """The pool's data folder, Ray's, and Ray's stdout, after indexing ``source`` into each.

    ``code``: the exit code both runs must end with (1 when the source holds a bad file).
    """
    pool, ray = root / "pool", root / "ray"
    by_pool = run_reunite("index", str(source), "--bank", "ads", "--signals", SIGNALS, "--workers", "2",
                          "--quiet", data=pool)
    done = in_cluster(cluster, "index", str(source), "--bank", "ads", "--signals", SIGNALS, "--engine",
                      "ray", "--address", cluster.address, "--quiet", data=ray, check=False)
    assert (by_pool.returncode, done.returncode) == (code, code), (by_pool.stderr, done.stderr)
    return pool, ray, done.stdout


def assert_both_nodes_worked(data: Path, images: int) -> None:
    report = report_of(data)
    assert report["engine"] == "ray"
    nodes = report["nodes"]
    assert len(nodes) == 2 and all(n > 0 for n in nodes.values()), nodes
    assert sum(nodes.values()) == images, nodes


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 distinct photos, one copy of the first under another name, and one file that is no image."""
    root = tmp_path_factory.mktemp("raycrawl") / "crawl"
    root.mkdir()
    for i, tile in enumerate(tiles(24, size=128, seed=7)):
        tile.save(root / f"ad{i:02d}.png")
    (root / "repost.png").write_bytes((root / "ad00.png").read_bytes())
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return root


@pytest.fixture(scope="module")
def folder_runs(ray_cluster_of_two, folder: Path, tmp_path_factory: pytest.TempPathFactory):
    return index_both(ray_cluster_of_two, folder, tmp_path_factory.mktemp("rayfolder"), code=1)


def test_folder_crawl_on_two_nodes_equals_the_pool(folder_runs) -> None:
    pool, ray, stdout = folder_runs
    assert "24 indexed" in stdout and "1 failed" in stdout, stdout
    assert "ray: 25 images processed on 2 node(s)" in stdout, stdout
    assert_both_nodes_worked(ray, 25)  # the broken file reached a worker too, and failed there
    expected = catalog(pool)
    assert len(expected) == 24
    assert catalog(ray) == expected
    assert report_of(ray)["errors"] == report_of(pool)["errors"]  # the same file, code and reason
    assert report_of(pool)["engine"] == "pool" and report_of(pool)["nodes"] == {}


def test_rerun_on_ray_indexes_nothing_again(ray_cluster_of_two, folder: Path, folder_runs) -> None:
    _pool, ray, _stdout = folder_runs
    again = in_cluster(ray_cluster_of_two, "index", str(folder), "--bank", "ads", "--signals", SIGNALS,
                       "--engine", "ray", "--address", ray_cluster_of_two.address, "--quiet", data=ray,
                       check=False)
    assert again.returncode == 1, again.stderr  # the broken file is still broken: incomplete
    assert "0 indexed" in again.stdout and "25 already indexed" in again.stdout, again.stdout  # repost too
    # Only the file that failed before is tried again.
    assert "ray: 1 images processed on 1 node(s)" in again.stdout, again.stdout


def _crawl_of_tiles(path: Path, count: int) -> None:
    """A gzipped WARC of ``count`` photo responses, each under its own URL, record id and time."""
    with path.open("wb") as out:
        writer = WARCWriter(out, gzip=True)
        for n, tile in enumerate(tiles(count, size=128, seed=11)):
            body = io.BytesIO()
            tile.save(body, "PNG")
            http = StatusAndHeaders("200 OK", [("Content-Type", "image/png")], protocol="HTTP/1.1")
            record = writer.create_warc_record(
                f"https://board{n % 3}.example.com/ads/{n}.png", "response",
                payload=io.BytesIO(body.getvalue()),
                http_headers=http, warc_headers_dict={
                    "WARC-Date": f"2026-05-{n % 28 + 1:02d}T10:00:00Z",
                    "WARC-Record-ID": f"<urn:uuid:00000000-0000-4000-9000-{n:012d}>"})
            writer.write_record(record)


def test_warc_crawls_on_two_nodes_equal_the_pool(ray_cluster_of_two, tmp_path: Path) -> None:
    """The issue's WARC (photos, an HTML page, a resource, a repost) and one of 20 photos."""
    small, tiled = tmp_path / "crawl.warc.gz", tmp_path / "tiles.warc.gz"
    write_crawl(small)
    _crawl_of_tiles(tiled, 20)
    for source, indexed, images in ((small, 4, 4), (tiled, 20, 20)):
        pool, ray, stdout = index_both(ray_cluster_of_two, source, tmp_path / source.name.split(".")[0])
        assert f"{indexed} indexed" in stdout and "warc:" in stdout, stdout
        expected = catalog(pool)
        assert len(expected) == indexed
        assert catalog(ray) == expected  # URL, site and capture time included
        if images >= 8:  # enough tasks that the spread puts some on each node
            assert_both_nodes_worked(ray, images)
    small_on_ray = catalog(tmp_path / "crawl" / "ray")
    coffee = next(f for (label, _sha), (f, _v) in small_on_ray.items() if label.endswith("000000000001"))
    assert coffee["url"] == "https://ads1.example.org/ad/1/coffee.png"
    assert coffee["posted_at"] == "2026-03-04T05:06:07Z" and coffee["site"] == "ads1.example.org"


def test_interrupted_ray_run_resumes_where_it_stopped(ray_cluster_of_two, folder: Path, folder_runs,
                                                      tmp_path: Path) -> None:
    """Ctrl-C after the first results: what was done is kept, the next run does only the rest."""
    pool, _ray, _stdout = folder_runs
    data = tmp_path / "data"
    cmd = [*ray_cluster_of_two.enter(), sys.executable, "-m", "api.cli", "--data", str(data), "index",
           str(folder), "--bank", "ads", "--signals", SIGNALS, "--engine", "ray", "--address",
           ray_cluster_of_two.address]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled",
           "REUNITE_PROGRESS_EVERY": "1", "REUNITE_RAY_WINDOW": "2"}  # windows of 2: many small datasets
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:  # "index: 3 img, 0.4 img/s, 1 failed": stop once photos were extracted
            seen.append(line)
            if line.startswith("index: ") and int(line.split()[1]) >= 4:
                proc.send_signal(signal.SIGINT)  # nsenter execs reunite: the signal reaches it
                break
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, seen, err)
    assert "interrupted: run the same command again to resume" in err
    kept = report_of(data)["indexed"]
    assert 0 < kept < 24, (out, seen, err)
    rest = in_cluster(ray_cluster_of_two, "index", str(folder), "--bank", "ads", "--signals", SIGNALS,
                      "--engine", "ray", "--address", ray_cluster_of_two.address, "--quiet", data=data,
                      check=False)
    assert rest.returncode == 1, rest.stderr  # finished, but the broken file failed again
    resumed = report_of(data)
    assert resumed["indexed"] == 24 - kept, rest.stdout  # only what the first run had not stored
    assert resumed["already_indexed"] >= kept, rest.stdout  # (the repost too, when its photo was kept)
    assert catalog(data) == catalog(pool)


def test_the_pool_never_imports_ray(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes((FIXTURES / "coffee.png").read_bytes())
    loaded = imported("index", str(photos), "--bank", "ads", "--signals", SIGNALS, "--quiet",
                      data=tmp_path / "data")
    assert "indexer" in loaded and not loaded & {"ray", "pyarrow", "pandas"}, sorted(loaded)


@pytest.mark.parametrize(("args", "says"), [
    (("--address", "127.0.0.1:6380"), "--address is the Ray cluster's"),
    (("--engine", "spark"), "unknown --engine 'spark'"),
    (("--engine", "ray", "--workers", "4"), "--workers is the pool's"),
])
def test_bad_engine_options_exit_2_with_one_line(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    (tmp_path / "photos").mkdir()
    done = run_reunite("index", str(tmp_path / "photos"), "--bank", "ads", *args, data=tmp_path / "data")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert says in done.stderr
