"""`reunite eval --kind copy --signals ...`: a copy suite measured with the signal set users index with.

The suite is a folder of generated tiles (never ../shared/bench in tests). The gallery's
catalog is kept (``data_dir``) so the test reads which signals were really stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import png_bytes, run_reunite, tiles
from sqlalchemy import select

from indexer.store.catalog import Catalog, Vector
from matcher.evaluation import suite as evaluate


def _suite(root: Path) -> Path:
    suite = root / "suite"
    (suite / "images").mkdir(parents=True)
    for k, tile in enumerate(tiles(3, seed=41)):
        (suite / "images" / f"g{k}.png").write_bytes(png_bytes(tile))
        (suite / "images" / f"q{k}.png").write_bytes(png_bytes(tile.rotate(90, expand=True)))
    (suite / "gallery.csv").write_text("path,label\n" + "".join(f"images/g{k}.png,t{k}\n" for k in range(3)))
    (suite / "queries.csv").write_text("path,label,transform\n"
                                       + "".join(f"images/q{k}.png,t{k},rotate90\n" for k in range(3)))
    return suite


def _stored_signals(data: Path) -> set[str]:
    catalog = Catalog.open(data)
    try:
        with catalog.session() as s:
            return {str(name) for name in s.scalars(select(Vector.signal).distinct())}
    finally:
        catalog.engine.dispose()


def test_the_gallery_is_indexed_with_the_signals_asked_for(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    result = evaluate.run_eval(suite, "copy", data_dir=tmp_path / "hashes", signal_names=["hashes"])
    assert _stored_signals(tmp_path / "hashes") == {"phash", "dhash", "ahash", "whash", "pdq"}
    assert result.summary["n_queries"] == 3
    both = evaluate.run_eval(suite, "copy", data_dir=tmp_path / "both", signal_names=["hashes", "sift"])
    assert _stored_signals(tmp_path / "both") == {"phash", "dhash", "ahash", "whash", "pdq", "sift"}
    # A quarter turn is found by the PDQ variants and by the keypoints alike.
    assert both.summary["overall"]["top1"] == 1.0 and result.summary["overall"]["top1"] == 1.0, \
        (result.summary, both.summary)


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "copy", "--signals", "hashes,nonesuch"], "unknown signal or family: nonesuch"),
    (["--kind", "face", "--signals", "hashes"], "--signals applies to copy suites"),
])
def test_a_bad_signal_set_is_refused_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_reunite("eval", str(_suite(tmp_path)), *args, data=tmp_path / "data")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not list(tmp_path.glob("eval-*.json")) and not Path("eval-suite-copy.json").exists()
