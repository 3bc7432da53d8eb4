"""Copies inside common frames (issue 17): a generated suite and its benchmark, next to copydet.

    OMP_NUM_THREADS=1 python bench/frames_suite.py --bench ../shared/bench --out /tmp/frames \\
        [--photos 40] [--json frames.json]

The suite (written under ``--out/suite``, never into the repository): the
copydet gallery originals (real photos up to 1600 px) are the photos to find.
Each one enters the gallery once, alone or inside one of the frames of
bench/frame_kinds.py (three phone-app screenshots, a site card, a watermark
border); 50 more gallery items are those frames around LFW faces (so that every
frame is shared by many items of the bank, as in a crawl where many unrelated
ads are screenshots of one app) and 100 LFW faces alone are distractors.

Queries (``transform`` column, kind after the colon):

- ``other_frame:<kind>``: the photo inside another frame (or a meme) -> must match;
- ``same_frame:<kind>``: the photo inside the frame it has in the gallery, new per-post
  text (a repost) -> must match;
- ``alone``: the photo on its own (a third of them re-encoded at 400 px) -> must match;
- ``collage_2x2`` / ``collage_1x3``: the photo as one cell, unrelated faces in the others;
  ``paste``: the photo at a third of the width or less on another photo -> must match;
- ``diff_photo:<kind>``: the frame around a photo the gallery does not hold (venue photos,
  unused LFW faces) -> non-mated, every ``match`` is a false accept; ``diff_photo:collage_2x2``
  / ``diff_photo:paste`` likewise.

Answers come from the real Matcher (bench/copy_suite.py) and are scored like copydet
(score.py): recall at the default = rank-1 right label at decision ``match``; false accept
= a wrong rank-1 ``match`` (mated) or any ``match`` (non-mated). "Wrong matches" also counts
a ``match`` with a wrong label at any rank.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import copy_suite as cs  # noqa: E402
import frame_kinds as fk  # noqa: E402

from matcher import defaults as defaults_mod  # noqa: E402
from matcher.search import decide  # noqa: E402

GALLERY_FORMS = ("alone", "app_feed", "app_chat", "app_dark", "site_card", "watermark_border")
FRAMED = GALLERY_FORMS[1:]
QUERY_FRAMES = (*FRAMED, "meme")
FRAME_DISTRACTORS = 10
FACE_DISTRACTORS = 100
DIFF_PER_FRAME = 12


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _open(path: Path, side: int = 1000) -> Image.Image:
    img = Image.open(path).convert("RGB")
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return img


def _pools(bench: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(photos to find, other natural photos, LFW faces), each file used for one role only."""
    prov = cs.read_csv(bench / "copydet" / "provenance.csv")
    targets = [bench / "copydet" / r["path"] for r in prov
               if r["role"] == "gallery original"]
    in_copydet = {r["source_file"] for r in prov}
    venues = []
    seen_places = set()
    vprov = {r["path"]: r["source_file"] for r in cs.read_csv(bench / "venues" / "provenance.csv")}
    for r in cs.read_csv(bench / "venues" / "gallery.csv"):
        if r["label"] in seen_places or vprov.get(r["path"]) in in_copydet:
            continue
        seen_places.add(r["label"])
        venues.append(bench / "venues" / r["path"])
    # LFW faces, one photo per person: the copydet distractors and the faces suite's gallery.
    # (Two LFW photos of one person are the look-alike case, not a frame: a site card around
    # one photo of a politician matched another photo of him, 27 tight inliers on the face.)
    faces, seen = [], set()
    for suite, rows in (("copydet", prov), ("faces", cs.read_csv(bench / "faces" / "provenance.csv"))):
        for r in rows:
            key = re.sub(r"_\d{4}\.\w+$", "", r["source_file"].rsplit("/", 1)[-1])
            lfw = "LFW" in r["role"] or suite == "faces" and r["path"].startswith("images/g")
            if lfw and key not in seen:
                seen.add(key)
                faces.append(bench / suite / r["path"])
    return sorted(targets), venues, faces


def build_suite(bench: Path, out: Path, n_photos: int, seed: int = 17) -> Path:
    """Write the suite (see the module docstring) to ``out`` unless it is there already."""
    if (out / "queries.csv").exists():
        return out
    rng = np.random.default_rng(seed)
    targets, others, faces = _pools(bench)
    targets = [targets[i] for i in sorted(rng.choice(len(targets), min(n_photos, len(targets)),
                                                     replace=False))]
    faces = [faces[i] for i in rng.permutation(len(faces))]
    face_iter = iter(faces)
    (out / "images").mkdir(parents=True, exist_ok=True)
    gallery: list[dict[str, str]] = []
    queries: list[dict[str, str]] = []

    def save(img: Image.Image | bytes, prefix: str, quality: int = 85) -> str:
        n = len(gallery) + len(queries)
        path = f"images/{prefix}{n:05d}.jpg"
        (out / path).write_bytes(img if isinstance(img, bytes) else _jpeg(img, quality))
        return path

    def face() -> Image.Image:
        return _open(next(face_iter))

    for n, path in enumerate(targets):
        photo = _open(path)
        label = f"photo{n:03d}"
        form = GALLERY_FORMS[n % len(GALLERY_FORMS)]
        shown = photo if form == "alone" else fk.FRAMES[form](photo, rng)
        gallery.append({"path": save(shown, "g", 90), "label": label})
        for kind in QUERY_FRAMES:
            name = f"same_frame:{kind}" if kind == form else f"other_frame:{kind}"
            queries.append({"path": save(fk.FRAMES[kind](photo, rng), "q"), "label": label,
                            "transform": name})
        if form != "alone":
            small = photo.copy()
            if n % 3 == 0:
                small.thumbnail((400, 400), Image.Resampling.LANCZOS)
            queries.append({"path": save(small, "q"), "label": label, "transform": "alone"})
        slot = int(rng.integers(4))
        queries.append({"path": save(fk.collage(photo, [face() for _ in range(3)], 2, 2, slot,
                                                (800, 800)), "q"),
                        "label": label, "transform": "collage_2x2"})
        queries.append({"path": save(fk.collage(photo, [face() for _ in range(2)], 1, 3,
                                                int(rng.integers(3)), (1200, 420)), "q"),
                        "label": label, "transform": "collage_1x3"})
        background = _open(others[n % len(others)]) if n % 2 else face()
        queries.append({"path": save(fk.paste(photo, background, rng,
                                              float(rng.uniform(0.25, 1 / 3))), "q"),
                        "label": label, "transform": "paste"})
    for kind in FRAMED:
        for i in range(FRAME_DISTRACTORS):
            gallery.append({"path": save(fk.FRAMES[kind](face(), rng), "g", 90),
                            "label": f"framed_{kind}_{i}"})
    for i in range(FACE_DISTRACTORS):
        gallery.append({"path": save(face(), "g", 90), "label": f"face_{i}"})
    # Non-mated: the gallery's frames around photos it does not hold (natural photos, faces).
    spare = iter(others[len(targets) % max(len(others), 1):] + others)
    for kind in QUERY_FRAMES:
        for i in range(DIFF_PER_FRAME):
            photo = _open(next(spare)) if i % 2 == 0 else face()
            queries.append({"path": save(fk.FRAMES[kind](photo, rng), "q"), "label": "",
                            "transform": f"diff_photo:{kind}"})
    for _ in range(DIFF_PER_FRAME):
        queries.append({"path": save(fk.collage(face(), [face() for _ in range(3)], 2, 2, 0,
                                                (800, 800)), "q"),
                        "label": "", "transform": "diff_photo:collage_2x2"})
        queries.append({"path": save(fk.paste(face(), _open(next(spare)), rng), "q"), "label": "",
                        "transform": "diff_photo:paste"})
    for name, rows, cols in (("gallery.csv", gallery, ["path", "label"]),
                             ("queries.csv", queries, ["path", "label", "transform"])):
        with (out / name).open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=cols)
            writer.writeheader()
            writer.writerows(rows)
    return out


GROUPS = {"photo in another frame or alone": ("other_frame:", "same_frame:", "alone"),
          "collage parts and pastes": ("collage_", "paste"),
          "same frame, different photo (non-mated)": ("diff_photo:",)}


def wrong_matches(records: list[dict[str, Any]], defaults: defaults_mod.Defaults) -> dict[str, int]:
    """Per transform: queries with a ``match`` of a label other than theirs, at any rank."""
    out: dict[str, int] = defaultdict(int)
    for rec in records:
        for c in rec["candidates"]:
            if (decide.evidence_score(c["evidence"], defaults) >= decide.MATCH_SCORE
                    and c["label"] != rec["label"]):
                out[rec["transform"]] += 1
                out["OVERALL"] += 1
                break
    return out


def report(records: list[dict[str, Any]]) -> dict[str, Any]:
    defaults = defaults_mod.load()
    per = cs.metrics(records, cs.ours(defaults))
    wrong = wrong_matches(records, defaults)
    groups = {}
    for name, prefixes in GROUPS.items():
        subset = [r for r in records if r["transform"].startswith(prefixes)]
        m = cs.metrics(subset, cs.ours(defaults))["OVERALL"] if subset else {}
        groups[name] = {**m, "wrong_matches": sum(
            1 for r in subset if wrong_matches([r], defaults).get("OVERALL"))}
    templated = sum(1 for r in records for c in r["candidates"]
                    if c["evidence"].get("local_template"))
    return {"per_transform": per, "wrong_matches": dict(wrong), "groups": groups,
            "template_evidence": templated, "times": cs.times(records)}


def table(rep: dict[str, Any]) -> str:
    lines = ["| transform | n | recall at default | top-1 | false accepts | wrong matches (any rank) |",
             "|---|---|---|---|---|---|"]
    for name, row in rep["per_transform"].items():
        lines.append(f"| {name} | {row['n']} | {row['recall']:.3f} | {row['top1']:.3f} | "
                     f"{row['false_accepts']} | {rep['wrong_matches'].get(name, 0)} |")
    lines.append("")
    for name, row in rep["groups"].items():
        lines.append(f"- {name}: n {row.get('n', 0)}, recall {row.get('recall', 0):.3f}, "
                     f"false accepts {row.get('false_accepts', 0)}, wrong matches {row['wrong_matches']}")
    t = rep["times"]
    lines.append(f"- candidates marked same template, different photo: {rep['template_evidence']}")
    lines.append(f"- query CPU p50 {t['cpu_p50']*1000:.0f} ms, p95 {t['cpu_p95']*1000:.0f} ms; "
                 f"wall p50 {t['wall_p50']*1000:.0f} ms, p95 {t['wall_p95']*1000:.0f} ms")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "bench")
    ap.add_argument("--out", type=Path, default=Path("/tmp/frames"))
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--records", type=Path, default=None, help="Default: OUT/records.jsonl.")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--queries", type=Path, default=None,
                    help="A queries.csv with a subset of the suite's queries (default: all).")
    args = ap.parse_args()
    import faiss
    faiss.omp_set_num_threads(1)
    suite = build_suite(args.bench, args.out / "suite", args.photos)
    records_path = args.records or args.out / "records.jsonl"
    data = args.out / "data"
    queries = cs.read_csv(args.queries or suite / "queries.csv")
    if (data / "catalog.sqlite").exists() or any(data.glob("*.sqlite*")):
        from indexer.store.store import Store
        store = Store(data)
        bank = store.bank_or_error("copy")
    else:
        store, bank, secs = cs.build(suite, data)
        print(f"indexed {len(cs.read_csv(suite / 'gallery.csv'))} gallery images in {secs:.0f} s")
    start = time.perf_counter()
    records = cs.collect(store, bank, suite, queries, records_path)
    print(f"answered {len(records)} queries in {time.perf_counter() - start:.0f} s")
    rep = report(records)
    print(table(rep))
    if args.json:
        args.json.write_text(json.dumps(rep, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
