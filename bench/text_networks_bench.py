"""Networks that share a number only on their photos: pairwise precision / recall before and after OCR.

The crawl is the networks bench's (:mod:`bench.networks_bench`: copydet networks
linked by reposted photos and typed contacts, unrelated LFW ads with their
own contacts), kept small because OCR costs 1-3 s a photo, plus:

- ``--painted`` networks (sizes 2-6) whose ads show *different* LFW photos
  and type no contact: the network's phone number is painted on each photo
  (plain, bar, colour or rotated, 14-30 px glyphs, Debian fonts; 30% also a
  handle), so only the text on the photos links them;
- a share of the unrelated ads (``--painted-unrelated``) with their *own*
  number or distractor text painted on, so that OCR has a chance to link ads
  it should not.

Both runs index the same manifest through the real commands in the same
process run: *before* with ``--signals hashes``, *after* with
``--signals hashes,text``; then ``reunite networks --json``. Painted images
are written under ``--work`` (never into the repository).

    .venv/bin/python bench/text_networks_bench.py --out bench/results/text_networks.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from networks_bench import (  # noqa: E402
    Ad,
    Contacts,
    build_crawl,
    pair_metrics,
    predicted_from,
    reunite,
    write_manifest,
)
from PIL import Image  # noqa: E402
from text_suite import DISTRACTORS, PREFIXES, fonts, paint_lines, random_handle  # noqa: E402

PAINT_STYLES = ("plain", "bar", "colour", "rotated")


def painted_photo(src: str, lines: list[str], out: Path, rng: random.Random, font_paths: list[Path]) -> str:
    """``src`` scaled to a 500-700 px ad photo with ``lines`` painted on it, written to ``out``."""
    with Image.open(src) as img:
        img = img.convert("RGB")
        side = rng.randint(500, 700)
        scale = side / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)))
    style = rng.choice(PAINT_STYLES)
    picture, _glyph = paint_lines(img, style, lines, rng, font_paths)
    # Glyphs of 14-30 px: paint_lines draws 14-40; the ad photos here are smaller than the suite's.
    picture.save(out, quality=90)
    return str(out)


def add_painted(ads: list[Ad], spare: list[str], rng: random.Random, work: Path, n_networks: int,
                share_unrelated: float, today: dt.date) -> tuple[list[Ad], dict[str, str]]:
    """The painted networks' ads (appended to ``ads``) and painted unrelated photos (path replaced)."""
    font_paths = fonts()
    folder = work / "painted"
    folder.mkdir(parents=True, exist_ok=True)
    contacts = Contacts(rng)
    new: list[Ad] = []
    for n in range(n_networks):
        parts = contacts.phone()
        handle = random_handle(rng)[0] if rng.random() < 0.3 else None
        for k in range(rng.randint(2, 6)):
            lines = [f"{rng.choice(PREFIXES)} {contacts.show_phone(parts)}".strip()]
            if handle and rng.random() < 0.5:
                lines.append(handle)
            path = painted_photo(spare.pop(), lines, folder / f"p{n:03d}-{k}.jpg", rng, font_paths)
            new.append(Ad("", f"painted{n:03d}", [path], site="site-a.example",
                          posted_at=(today - dt.timedelta(days=rng.randint(0, 60))).isoformat()))
    replaced: dict[str, str] = {}
    for ad in ads:
        if ad.truth or rng.random() >= share_unrelated:
            continue
        src = ad.photos[0]
        own = [f"Call {contacts.show_phone(contacts.phone())}"] if rng.random() < 0.6 else rng.sample(
            DISTRACTORS, 2)
        path = painted_photo(src, own, folder / f"u{len(replaced):04d}.jpg", rng, font_paths)
        replaced[src] = path
        ad.photos = [path, *ad.photos[1:]]
    return new, replaced


def run(data: Path, manifest: Path, signals: str, truth: dict[str, str]) -> dict[str, object]:
    t0 = time.perf_counter()
    reunite(data, "index", str(manifest), "--bank", "crawl", "--kind", "ads", "--signals", signals, "--quiet")
    t1 = time.perf_counter()
    found = [json.loads(line) for line in reunite(data, "networks", "--bank", "crawl", "--json")
             .stdout.splitlines()]
    predicted = predicted_from(found, list(truth))
    painted = {k: v for k, v in truth.items() if v.startswith("painted")}
    return {"signals": signals, "index_and_link_seconds": round(t1 - t0, 1), "networks_found": len(found),
            **pair_metrics(truth, predicted),
            "painted_networks": {key: value for key, value in pair_metrics(
                painted, {k: predicted[k] for k in painted}).items()
                if key in ("pairwise_recall", "true_pairs")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "bench")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reunite-text-networks"))
    ap.add_argument("--networks", type=int, default=12)
    ap.add_argument("--unrelated", type=int, default=150)
    ap.add_argument("--painted", type=int, default=12)
    ap.add_argument("--painted-unrelated", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--resume", action="store_true",
                    help="Reuse existing data folders (index is idempotent: an interrupted run resumes; "
                         "its seconds then count the resumed part only).")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    today = dt.date.today()
    args.work.mkdir(parents=True, exist_ok=True)
    ads, spare = build_crawl(args.bench, rng, args.networks, args.unrelated, today)
    for ad in ads:  # build_crawl gives unrelated ads their own label as truth; mark them for painting
        if ad.truth == ad.label:
            ad.truth = ""
    painted, _replaced = add_painted(ads, spare, rng, args.work, args.painted, args.painted_unrelated, today)
    ads += painted
    base = len(ads) - len(painted)
    for n, ad in enumerate(painted):
        ad.label = f"ad-{base + n:06d}"
    for ad in ads:
        ad.truth = ad.truth or ad.label
    manifest = write_manifest(ads, args.work / f"crawl-{args.seed}.csv")
    truth = {a.label: a.truth for a in ads}
    result: dict[str, object] = {
        "date": today.isoformat(), "seed": args.seed,
        "crawl": {"ads": len(ads), "photos": sum(len(a.photos) for a in ads),
                  "copy_networks": args.networks, "painted_networks": args.painted,
                  "painted_network_ads": len(painted),
                  "unrelated_ads_with_painted_text": len(_replaced)}}
    for name, signals in (("before", "hashes"), ("after", "hashes,text")):
        data = args.work / f"data-{args.seed}-{name}"
        if data.exists() and not args.resume:
            raise SystemExit(f"{data} exists: remove it or choose another --work / --seed")
        result[name] = run(data, manifest, signals, truth)
        print(json.dumps({name: result[name]}), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
