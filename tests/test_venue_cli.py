"""``reunite venues retrain``: refit a venue bank's vocabulary on demand, through the real CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from indexer.scene.bank import SceneBankIndex
from indexer.signals.scene import SCENE
from indexer.store.store import Store
from tests.conftest import CATALOG_OF, bind_catalog, jpeg_bytes, photo, run_reunite, vectors_of
from tests.test_scene import view


def _manifest(folder: Path, rows: list[tuple[str, str, int]]) -> Path:
    """Venue photos (other views of fixture photos) and their enrollment manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for label, name, seed in rows:
        path = folder / f"{label}_{seed}.jpg"
        path.write_bytes(jpeg_bytes(view(photo(name), seed)))
        out.append({"path": str(path), "label": label, "name": label.title()})
    manifest = folder / "venues.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "name"])
        writer.writeheader()
        writer.writerows(out)
    return manifest


def _index(data: Path) -> SceneBankIndex:
    store = Store(data, CATALOG_OF.get(data.resolve()), vectors_of(data))
    bank = store.bank_or_error("hotels")
    return SceneBankIndex(store.catalog, store.indexes.root / f"bank-{bank.id}", bank.id, SCENE)


def test_retrain_refits_the_vocabulary_on_the_whole_bank(tmp_path: Path, data_dir: Path,
                                                         catalog_url: str | None) -> None:
    bind_catalog(data_dir, catalog_url)  # the scene features of every `reunite` below: this catalog
    # Ten references give enough descriptors for the full vocabulary (64 words).
    rooms = [("cafe", "coffee.png", seed) for seed in (1, 2, 3, 4)]
    rooms += [("launch_hall", "rocket.jpg", seed) for seed in (1, 2, 3)]
    rooms += [("cat_room", "chelsea.png", seed) for seed in (1, 2, 3)]
    first = _manifest(tmp_path / "a", rooms)
    run_reunite("enroll", "--bank", "hotels", "--kind", "venue", "--quiet", str(first),
                data=data_dir, check=True)
    # The first search trains the vocabulary on the references there are then.
    trained = _index(data_dir).current()
    assert trained.meta.trained_on == 10 and trained.meta.words == 64
    second = _manifest(tmp_path / "b", [("studio", "camera.png", 1)])
    run_reunite("enroll", "--bank", "hotels", "--kind", "venue", "--quiet", str(second),
                data=data_dir, check=True)
    grown = _index(data_dir).current()
    # Eleven references are under twice ten: the bank index only caught up, it did not retrain.
    assert len(grown) == 11 and grown.meta.trained_on == 10
    assert grown.vocabulary is not None
    before = grown.vocabulary.copy()

    done = run_reunite("venues", "retrain", "--bank", "hotels", "--json", data=data_dir, check=True)
    result = json.loads(done.stdout)
    assert result["bank"] == "hotels" and result["references"] == 11 and result["words"] == 64

    after = _index(data_dir)  # reloaded from disk, as the next process sees it
    assert after.meta.trained_on == 11 and len(after) == 11
    assert after.meta.revision == after.catalog.revision(after.bank_id, SCENE)
    assert after.vocabulary is not None
    assert not np.array_equal(after.vocabulary, before)
    # The saved index is current: the next search does not retrain again.
    assert after.current().meta.trained_on == 11

    plain = run_reunite("venues", "retrain", "--bank", "hotels", data=data_dir, check=True)
    assert "retrained on 11 references" in plain.stdout


def test_retrain_refuses_unknown_and_non_venue_banks(tmp_path: Path, data_dir: Path) -> None:
    missing = run_reunite("venues", "retrain", "--bank", "nowhere", data=data_dir)
    assert missing.returncode == 2 and "no bank named 'nowhere'" in missing.stderr
    ads = tmp_path / "ads"
    ads.mkdir()
    (ads / "a.jpg").write_bytes(jpeg_bytes(photo("coffee.png")))
    run_reunite("index", str(ads), "--bank", "ads", "--kind", "ads", "--quiet", "--signals", "pdq",
                data=data_dir, check=True)
    done = run_reunite("venues", "retrain", "--bank", "ads", data=data_dir)
    assert done.returncode == 2 and "holds no scene vectors" in done.stderr
