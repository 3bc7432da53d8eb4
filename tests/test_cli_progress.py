"""Progress without a terminal: `reunite index` and `reunite enroll` log counted lines to stderr.

The real command runs in a subprocess whose stderr is a pipe (as under cron
or CI), with the line interval lowered through REUNITE_PROGRESS_EVERY so a
handful of fixture tiles produce several lines; the lines carry counts and
rates, never a path or a label. `--quiet` silences them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from conftest import png_bytes, run_reunite, tiles

from api.progress import Progress

# A crawl is read as a stream (its size unknown up front): index lines count without a total.
LINE = re.compile(r"^(index|enroll): (\d+)(?:/(\d+))? img(?: \(\d+\.\d%\))?, \d+\.\d img/s(, \d+ failed)?$")


def _folder(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "crawl"
    folder.mkdir()
    for k, tile in enumerate(tiles(n, seed=21)):
        (folder / f"secret-name-{k}.png").write_bytes(png_bytes(tile))
    return folder


def test_index_logs_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 6)
    (folder / "broken.png").write_bytes(b"not an image")
    done = run_reunite("index", str(folder), "--bank", "ads", "--signals", "hashes", "--workers", "1",
                       data=tmp_path / "data", env={"REUNITE_PROGRESS_EVERY": "2"})
    lines = [line for line in done.stderr.splitlines() if line.startswith("index: ")]
    parsed = [LINE.match(line) for line in lines]
    assert lines and all(parsed), done.stderr
    counts = [int(m.group(2)) for m in parsed if m]
    assert counts == sorted(counts) and counts[-1] == 7 and len(counts) >= 3, lines
    assert lines[-1].endswith("1 failed"), lines
    assert "secret-name" not in "\n".join(lines)
    # The run finished but left a file out: exit 1 (documented), and a summary line last.
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1].startswith("incomplete: 1 of 7 images failed ("), done.stderr
    quiet = run_reunite("index", str(folder), "--bank", "ads2", "--signals", "hashes", "--quiet",
                        data=tmp_path / "data", env={"REUNITE_PROGRESS_EVERY": "2"})
    assert "index: " not in quiet.stderr


def test_enroll_logs_progress_lines(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 4)
    manifest = tmp_path / "venues.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "name"])
        writer.writeheader()
        writer.writerows({"path": str(p), "label": f"room-{k}", "name": "Hotel"}
                         for k, p in enumerate(sorted(folder.iterdir())))
    done = run_reunite("enroll", "--bank", "rooms", "--kind", "venue", str(manifest), data=tmp_path / "data",
                       env={"REUNITE_PROGRESS_EVERY": "1"})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("enroll: ")]
    assert [(int(LINE.match(line).group(2)), LINE.match(line).group(3)) for line in lines] == [
        (1, "4"), (2, "4"), (3, "4"), (4, "4")], done.stderr
    assert "room-" not in done.stderr


def test_progress_logs_by_time_as_well_as_by_count(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("REUNITE_PROGRESS_EVERY", "1000")
    monkeypatch.setenv("REUNITE_PROGRESS_SECONDS", "0.000001")
    out = io.StringIO()
    bar = Progress("back-search", "ad", 3, stream=out, tty=False)
    for n in (1, 2, 3):
        bar.update(n)
    bar.close()
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "back-search: 1/3 ad (33.3%)", "back-search: 2/3 ad (66.7%)", "back-search: 3/3 ad (100.0%)"]


LINK_LINE = re.compile(r"^link: (\d+)/(\d+) (ad photo|img) \(\d+\.\d%\), \d+\.\d (?:ad photo|img)/s$")


def _link_lines(stderr: str) -> dict[str, list[tuple[int, int]]]:
    """The linker's progress lines by unit: [(done, total), ...]; every `link:` line must parse."""
    lines = [line for line in stderr.splitlines() if line.startswith("link: ")]
    out: dict[str, list[tuple[int, int]]] = {}
    for line in lines:
        m = LINK_LINE.match(line)
        assert m, line
        out.setdefault(m.group(3), []).append((int(m.group(1)), int(m.group(2))))
    return out


def test_linking_logs_progress_at_index_time_and_when_deferred(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 6)
    env = {"REUNITE_PROGRESS_EVERY": "2"}
    done = run_reunite("index", str(folder), "--bank", "ads", "--signals", "hashes", data=tmp_path / "data",
                       env=env, check=True)
    by_unit = _link_lines(done.stderr)
    assert by_unit["ad photo"][-1] == (6, 6), done.stderr  # each ad's rows (counted per chunk of 200)
    counts = by_unit["img"]  # then each new image searched
    assert counts[-1] == (6, 6) and len(counts) >= 3 and counts == sorted(counts), done.stderr
    assert "secret-name" not in done.stderr
    deferred = run_reunite("index", str(folder), "--bank", "later", "--signals", "hashes", "--no-link",
                           data=tmp_path / "data", env=env, check=True)
    assert "link: " not in deferred.stderr
    networks = run_reunite("networks", "--bank", "later", data=tmp_path / "data", env=env, check=True)
    assert _link_lines(networks.stderr)["img"][-1] == (6, 6), networks.stderr
    run_reunite("index", str(folder), "--bank", "hush", "--signals", "hashes", "--no-link", "--quiet",
                data=tmp_path / "data", env=env, check=True)
    quiet = run_reunite("networks", "--bank", "hush", "--quiet", data=tmp_path / "data", env=env, check=True)
    assert "new link(s)" in quiet.stderr and "link: " not in quiet.stderr, quiet.stderr


VOCAB_LINE = re.compile(r"^vocabulary (sample|encode): (\d+)/(\d+) ref \(\d+\.\d%\), \d+\.\d ref/s$")


def test_first_venue_search_logs_the_vocabulary_training(tmp_path: Path) -> None:
    """The first search of a venue bank trains its vocabulary: counted lines, not a silent minute."""
    from tests.test_venue_cli import _manifest

    rooms = [("cafe", "coffee.png", seed) for seed in (1, 2, 3)] + [("hall", "rocket.jpg", seed)
                                                                     for seed in (1, 2)]
    data = tmp_path / "data"
    manifest = _manifest(tmp_path / "v", rooms)
    run_reunite("enroll", "--bank", "hotels", "--kind", "venue", "--quiet", str(manifest), data=data,
                check=True)
    query = sorted((tmp_path / "v").glob("cafe_*.jpg"))[0]
    done = run_reunite("match", str(query), "--bank", "hotels", "--json", data=data, check=True,
                       env={"REUNITE_PROGRESS_EVERY": "2"})
    lines = [line for line in done.stderr.splitlines() if line.startswith("vocabulary")]
    phases = [m.group(1) for m in map(VOCAB_LINE.match, lines) if m]
    counts = [(m.group(1), int(m.group(2)), int(m.group(3))) for m in map(VOCAB_LINE.match, lines) if m]
    assert ("sample", 5, 5) in counts and ("encode", 5, 5) in counts, done.stderr
    assert phases.index("encode") > phases.index("sample")
    assert any(re.fullmatch(r"vocabulary k-means: \d+ words from \d+ descriptors of 5 refs", line)
               for line in lines), done.stderr
    assert json.loads(done.stdout)["candidates"][0]["label"] == "cafe"
    again = run_reunite("match", str(query), "--bank", "hotels", "--json", data=data, check=True)
    assert "vocabulary" not in again.stderr  # trained once, saved: the next search just searches


EVAL_LINE = re.compile(r"^(eval gallery|eval): (\d+)/(\d+) (img|query) \(\d+\.\d%\), "
                       r"\d+\.\d (?:img|query)/s$")


def test_eval_logs_the_gallery_then_the_queries(tmp_path: Path) -> None:
    """`reunite eval` on a suite folder of its own (never ../shared/bench in tests): both phases counted."""
    suite = tmp_path / "suite"
    (suite / "images").mkdir(parents=True)
    picked = tiles(4, seed=33)
    for k, tile in enumerate(picked):
        (suite / "images" / f"g{k}.png").write_bytes(png_bytes(tile))
        (suite / "images" / f"q{k}.png").write_bytes(png_bytes(tile.rotate(180)))
    (suite / "gallery.csv").write_text("path,label\n" + "".join(f"images/g{k}.png,t{k}\n" for k in range(4)))
    (suite / "queries.csv").write_text("path,label,transform\n"
                                       + "".join(f"images/q{k}.png,t{k},rotate180\n" for k in range(4)))
    done = run_reunite("eval", str(suite), "--kind", "copy", "--out", str(tmp_path / "eval.json"),
                       data=tmp_path / "data", env={"REUNITE_PROGRESS_EVERY": "2"}, check=True)
    found = [m.groups()[:3] for m in map(EVAL_LINE.match, done.stderr.splitlines()) if m]
    assert ("eval gallery", "4", "4") in found and ("eval", "4", "4") in found, done.stderr
    assert found.index(("eval gallery", "4", "4")) < found.index(("eval", "4", "4"))
