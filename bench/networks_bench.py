"""Ad networks on a synthetic crawl with ground truth: pairwise precision / recall, ARI, link time.

The crawl is generated from the photos of ``../shared/bench`` (never copied:
manifests point at them; only the filler tiles are written, to the work folder):

- networks (default 60, sizes 3..40, log-uniform): each owns one or two
  copydet originals and shows them as the original or any of its 21 copydet
  edits (``provenance.csv`` says which query came from which original); an
  ad has 1-3 photos, the first always a version of the network's main
  original, and 30% of photos repost a file the network already used byte
  for byte; each network has one or two phone numbers, shown by 40% of
  its ads in one of six formats, and one e-mail shown by 15% (Gmail variants);
- unrelated ads (default 2,000): one or two photos each from the LFW photos of
  the copydet distractors and the faces suite (one per source file), with
  their own phone (50%) and e-mail (20%);
- held-out ads (default 100, half from networks): linked one at a time at the
  end, each timed;
- optional filler ads (``--crawl-size``) to grow the crawl before the held-out
  ads are timed: one photo each, a quadrant of a pool photo scaled to 250 px;
- optionally (``--app-screenshots N``, issue 17) the photos of N unrelated ads are
  shown as screenshots of one phone app (bench/frame_kinds.py), written to the work folder.

Run 1 (the precision / recall crawl) goes through the real commands:
``reunite index --kind ads`` (which links) then ``reunite networks --json``.
Run 2 grows the same data folder to ``--crawl-size`` ads in-process and times
linking each held-out ad (index its photos + link them) on one core, in CPU
seconds (``time.process_time``: the machine is shared) and wall seconds, with
one Linker kept for the whole run as a long-running indexer would. Both use ``--signals hashes``:
face extraction costs ~0.5 s of CPU per photo, which on a 2-core machine
would turn a 10,000-ad crawl into hours.

    OMP_NUM_THREADS=1 .venv/bin/python bench/networks_bench.py --crawl-size 10000 --out networks.json
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHONE_FORMATS = ("({a}) {e}-{l}", "{a}.{e}.{l}", "+1 {a} {e} {l}", "{a}-{e}-{l}", "{a}{e}{l}",
                 "1-{a}-{e}-{l}")
AREAS = ("212", "312", "415", "646", "702", "713", "305", "404", "617", "206", "503", "702")
SITES = ("site-a.example", "site-b.example", "site-c.example", "site-d.example", "site-e.example",
         "site-f.example")
FIELDS = ("path", "label", "site", "url", "posted_at", "phones", "emails", "location")


@dataclass
class Ad:
    label: str
    truth: str  # network id, or the ad's own label for unrelated ads
    photos: list[str]
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    site: str = ""
    posted_at: str = ""

    def rows(self) -> list[dict[str, str]]:
        return [{"path": p, "label": self.label, "site": self.site,
                 "url": f"https://{self.site}/ad/{self.label}", "posted_at": self.posted_at,
                 "phones": ";".join(self.phones), "emails": ";".join(self.emails), "location": ""}
                for p in self.photos]


# --- the crawl --------------------------------------------------------------------

def copydet_versions(suite: Path, exclude: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Original source file -> every image of it in copydet (gallery copy and edits).

    ``exclude`` names copydet transforms to leave out (for example ``screenshot``:
    every screenshot pastes its photo into one web template, which whole-image
    hashes see as the same picture).
    """
    out: dict[str, list[str]] = defaultdict(list)
    with (suite / "provenance.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if "LFW" in row["role"]:
                continue
            transform = row["role"].removeprefix("query ").split(" (")[0]
            if transform in exclude:
                continue
            out[row["source_file"]].append(str(suite / row["path"]))
    return {k: sorted(v) for k, v in sorted(out.items())}


def unrelated_pool(bench: Path) -> list[str]:
    """LFW photos from copydet's distractors and the faces suite, one per source file."""
    seen: set[str] = set()
    pool = []
    for suite in ("copydet", "faces"):
        with (bench / suite / "provenance.csv").open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if suite == "copydet" and "LFW" not in row["role"]:
                    continue
                key = row["source_file"].rsplit("/", 1)[-1]
                if key not in seen:
                    seen.add(key)
                    pool.append(str(bench / suite / row["path"]))
    return sorted(pool)


class Contacts:
    """Unique random valid US numbers and e-mail boxes, written in varied formats."""

    def __init__(self, rng: random.Random) -> None:
        from matcher.networks.contacts import normalise_phone

        self.rng = rng
        self.used: set[str] = set()
        self.boxes = 0
        self._valid = normalise_phone

    def phone(self) -> tuple[str, str, str]:
        while True:
            parts = (self.rng.choice(AREAS), str(self.rng.randint(201, 989)),
                     f"{self.rng.randint(0, 9999):04d}")
            e164 = self._valid("".join(parts))
            if e164 and e164 not in self.used:
                self.used.add(e164)
                return parts

    def show_phone(self, parts: tuple[str, str, str]) -> str:
        return self.rng.choice(PHONE_FORMATS).format(a=parts[0], e=parts[1], l=parts[2])

    def email(self) -> tuple[str, str]:
        self.boxes += 1
        return f"{self.rng.choice(('lia', 'mara', 'vip', 'sweet', 'anna'))}.{self.boxes}x", "gmail.com"

    def show_email(self, box: tuple[str, str]) -> str:
        local, domain = box
        return self.rng.choice((f"{local}@{domain}", f"{local.replace('.', '')}@{domain}",
                                f"{local}+{self.rng.randint(1, 99)}@{domain}",
                                f"{local.upper()}@GoogleMail.com"))


def build_crawl(bench: Path, rng: random.Random, n_networks: int, n_unrelated: int,
                today: dt.date, exclude: frozenset[str] = frozenset()) -> tuple[list[Ad], list[str]]:
    """(ads, unused pool photos): networks and unrelated ads, labels shuffled."""
    versions = copydet_versions(bench / "copydet", exclude)
    originals = list(versions)
    rng.shuffle(originals)
    if len(originals) < n_networks:
        raise SystemExit(f"only {len(originals)} copydet originals for {n_networks} networks")
    sizes = sorted((round(math.exp(rng.uniform(math.log(3), math.log(40)))) for _ in range(n_networks)),
                   reverse=True)
    owned: list[list[str]] = [[o] for o in originals[:n_networks]]
    for n, extra in enumerate(originals[n_networks:]):  # spare originals go to the largest networks
        owned[n % n_networks].append(extra)
    contacts = Contacts(rng)
    ads: list[Ad] = []

    def posted() -> str:
        return (today - dt.timedelta(days=rng.randint(0, 60))).isoformat()

    for n, size in enumerate(sizes):
        # Every ad shows the network's main photo (some version of it); further photos
        # may be any of the network's originals. 30% of photos repost a file byte for byte.
        pools = [list(versions[o]) for o in owned[n]]
        for pool in pools:
            rng.shuffle(pool)
        used: list[list[str]] = [[] for _ in pools]
        phones = [contacts.phone() for _ in range(rng.choice((1, 1, 2)))]
        email = contacts.email()
        for _ in range(size):
            photos = []
            for k in range(rng.choices((1, 2, 3), (50, 35, 15))[0]):
                which = 0 if k == 0 else rng.randrange(len(pools))
                pool, seen = pools[which], used[which]
                if seen and (rng.random() < 0.3 or not pool):
                    photos.append(rng.choice(seen))
                else:
                    photos.append(pool.pop())
                    seen.append(photos[-1])
            ad = Ad("", f"net{n:03d}", sorted(set(photos)), site=rng.choice(SITES), posted_at=posted())
            if rng.random() < 0.4:
                ad.phones.append(contacts.show_phone(rng.choice(phones)))
            if rng.random() < 0.15:
                ad.emails.append(contacts.show_email(email))
            ads.append(ad)
    free = unrelated_pool(bench)
    rng.shuffle(free)
    for _ in range(n_unrelated):
        photos = [free.pop() for _k in range(rng.choices((1, 2), (70, 30))[0])]
        ad = Ad("", "", photos, site=rng.choice(SITES), posted_at=posted())
        if rng.random() < 0.5:
            ad.phones.append(contacts.show_phone(contacts.phone()))
        if rng.random() < 0.2:
            ad.emails.append(contacts.show_email(contacts.email()))
        ads.append(ad)
    rng.shuffle(ads)
    for n, ad in enumerate(ads):
        ad.label = f"ad-{n:06d}"
        ad.truth = ad.truth or ad.label
    return ads, free


def app_screenshots(ads: list[Ad], count: int, folder: Path, seed: int) -> int:
    """The photos of ``count`` unrelated ads replaced by screenshots of one phone app showing them.

    Issue 17: in a crawl many unrelated ads are screenshots of one app (status bar,
    header, icons, caption: bench/frame_kinds.py ``app_feed``); they share that
    frame and nothing else, so they must not join one network. Returns the photos written.
    """
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT / "bench"))
    import frame_kinds

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for ad in [a for a in ads if a.truth == a.label][:count]:
        shots = []
        for src in ad.photos:
            path = folder / f"app-{written:05d}.jpg"
            with Image.open(src) as img:
                frame_kinds.app_feed(img.convert("RGB"), rng).save(path, quality=85)
            shots.append(str(path))
            written += 1
        ad.photos = shots
    return written


def filler_ads(pool: list[str], count: int, folder: Path, rng: random.Random, today: dt.date,
               start: int) -> list[Ad]:
    """``count`` one-photo ads showing quadrants of pool photos (written to ``folder``)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    ads = []
    for n in range(count):
        src = pool[n % len(pool)]
        quadrant = (n // len(pool)) % 4
        path = folder / f"f{n:06d}.jpg"
        if not path.exists():
            with Image.open(src) as img:
                img = img.convert("RGB")
                w, h = img.size
                x, y = (quadrant % 2) * w // 2, (quadrant // 2) * h // 2
                img.crop((x, y, x + w // 2, y + h // 2)).resize((250, 250)).save(path, quality=90)
        label = f"ad-{start + n:06d}"
        ads.append(Ad(label, label, [str(path)], site=rng.choice(SITES),
                      posted_at=(today - dt.timedelta(days=rng.randint(0, 60))).isoformat()))
    return ads


def write_manifest(ads: list[Ad], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(FIELDS))
        writer.writeheader()
        for ad in ads:
            writer.writerows(ad.rows())
    return path


# --- metrics --------------------------------------------------------------------

def pair_metrics(truth: dict[str, str], predicted: dict[str, str]) -> dict[str, float]:
    """Pairwise precision / recall of "same network" and the adjusted Rand index."""
    labels = sorted(truth)
    table: dict[tuple[str, str], int] = defaultdict(int)
    for label in labels:
        table[(truth[label], predicted[label])] += 1

    def pairs(n: int) -> int:
        return n * (n - 1) // 2

    tp = sum(pairs(c) for c in table.values())
    truth_sizes: dict[str, int] = defaultdict(int)
    pred_sizes: dict[str, int] = defaultdict(int)
    for (t, p), c in table.items():
        truth_sizes[t] += c
        pred_sizes[p] += c
    truth_pairs = sum(pairs(c) for c in truth_sizes.values())
    pred_pairs = sum(pairs(c) for c in pred_sizes.values())
    total = pairs(len(labels))
    expected = truth_pairs * pred_pairs / total if total else 0.0
    max_index = (truth_pairs + pred_pairs) / 2
    ari = (tp - expected) / (max_index - expected) if max_index != expected else 1.0
    return {"pairwise_precision": round(tp / pred_pairs, 4) if pred_pairs else 1.0,
            "pairwise_recall": round(tp / truth_pairs, 4) if truth_pairs else 1.0,
            "adjusted_rand_index": round(ari, 4), "true_pairs": truth_pairs, "predicted_pairs": pred_pairs}


def predicted_from(networks: list[dict[str, object]], labels: list[str]) -> dict[str, str]:
    out = {label: label for label in labels}
    for net in networks:
        for ad in net["ads"]:  # type: ignore[union-attr]
            out[str(ad)] = str(net["id"])
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# --- runs -----------------------------------------------------------------------

def reunite(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "api.cli", "--data", str(data), *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"reunite {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def link_in_process(store, bank, ads: list[Ad], linker) -> tuple[float, float, float]:  # noqa: ANN001
    """Index then link ``ads`` as `reunite index` does; returns (index CPU s, link CPU s, wall s)."""
    from indexer import ingest
    from matcher.networks.links import Occurrence, file_reader

    records = [ingest.Record(Path(row["path"]), row["label"], row["path"],
                             {k: v for k, v in row.items() if k not in ("path", "label") and v})
               for ad in ads for row in ad.rows()]
    w0, t0 = time.perf_counter(), time.process_time()
    ingest.index_records(store, bank, records, SIGNALS)
    t1 = time.process_time()
    occurrences = [Occurrence(r.label, ingest.file_sha256(r.path), r.attributes) for r in records]
    linker.record(bank, occurrences)
    linker.update(bank, read=file_reader({o.sha256: r.path for o, r in zip(occurrences, records,
                                                                            strict=True)}))
    return t1 - t0, time.process_time() - t1, time.perf_counter() - w0


SIGNALS = ["phash", "dhash", "ahash", "whash", "pdq"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--work", type=Path, default=Path("/tmp/reunite-networks-bench"))
    parser.add_argument("--networks", type=int, default=60)
    parser.add_argument("--unrelated", type=int, default=2000)
    parser.add_argument("--holdout", type=int, default=100)
    parser.add_argument("--crawl-size", type=int, default=10_000,
                        help="Ads in the crawl before the held-out ads are timed (0: no run 2).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--exclude-transforms", default="",
                        help="Copydet transforms left out of the networks' photos, comma separated.")
    parser.add_argument("--signals", default="hashes",
                        help="Signal families of run 1 (run 2 always uses hashes).")
    parser.add_argument("--app-screenshots", type=int, default=0,
                        help="Unrelated ads whose photos are shown as screenshots of one app (issue 17).")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rng = random.Random(args.seed)
    today = dt.date.today()
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"data-{args.seed}"
    if data.exists():
        raise SystemExit(f"{data} exists: remove it or choose another --work / --seed")

    exclude = frozenset(t.strip() for t in args.exclude_transforms.split(",") if t.strip())
    ads, spare = build_crawl(args.bench, rng, args.networks, args.unrelated, today, exclude)
    shots = app_screenshots(ads, args.app_screenshots, args.work / f"app-{args.seed}", args.seed) \
        if args.app_screenshots else 0
    network_ads = [a for a in ads if a.truth != a.label]
    unrelated = [a for a in ads if a.truth == a.label]
    holdout = network_ads[:args.holdout // 2] + unrelated[:args.holdout - args.holdout // 2]
    held = {a.label for a in holdout}
    base = [a for a in ads if a.label not in held]
    result: dict[str, object] = {
        "date": today.isoformat(), "seed": args.seed, "signals_run1": args.signals,
        "excluded_transforms": sorted(exclude), "app_screenshot_ads": args.app_screenshots,
        "app_screenshot_photos": shots,
        "crawl": {"networks": args.networks, "network_ads": len(network_ads), "unrelated_ads": len(unrelated),
                  "held_out_ads": len(holdout), "photos": sum(len(a.photos) for a in ads),
                  "distinct_photos": len({p for a in ads for p in a.photos})}}

    # Run 1: the real commands on the crawl without the held-out ads.
    manifest = write_manifest(base, args.work / f"crawl-{args.seed}.csv")
    t0 = time.perf_counter()
    reunite(data, "index", str(manifest), "--bank", "crawl", "--kind", "ads", "--signals", args.signals,
            "--quiet")
    t1 = time.perf_counter()
    lines = reunite(data, "networks", "--bank", "crawl", "--json").stdout.splitlines()
    t2 = time.perf_counter()
    found = [json.loads(line) for line in lines]
    truth = {a.label: a.truth for a in base}
    (args.work / f"truth-{args.seed}.json").write_text(json.dumps({a.label: a.truth for a in ads}),
                                                        encoding="utf-8")
    result["run1"] = {"ads": len(base), "link_seconds": round(t1 - t0, 1),
                      "networks_seconds": round(t2 - t1, 1), "networks_found": len(found),
                      **pair_metrics(truth, predicted_from(found, list(truth)))}
    print(json.dumps(result["run1"]), flush=True)

    if args.crawl_size:
        from indexer.store.store import Store
        from matcher.networks import components as nets
        from matcher.networks.links import Linker

        store = Store(data)
        bank = store.bank_or_error("crawl")
        linker = Linker(store)
        filler_count = max(0, args.crawl_size - len(base))
        pool = spare + sorted({p for a in unrelated for p in a.photos})
        filler = filler_ads(pool, filler_count, args.work / "filler", rng, today, start=len(ads))
        t0 = time.perf_counter()
        for start in range(0, len(filler), 500):
            link_in_process(store, bank, filler[start:start + 500], linker)
        store.checkpoint()
        grow_seconds = time.perf_counter() - t0
        index_s, link_s, wall_s = [], [], []
        for ad in holdout:
            i, k, w = link_in_process(store, bank, [ad], linker)
            index_s.append(i)
            link_s.append(k)
            wall_s.append(w)
        total_s = [i + k for i, k in zip(index_s, link_s, strict=True)]
        t0 = time.perf_counter()
        found2 = [n.summary() for n in nets.find_networks(store.catalog, bank)]
        components_s = time.perf_counter() - t0
        truth2 = {a.label: a.truth for a in ads}
        pred2 = predicted_from(found2, [*truth2, *(f.label for f in filler)])
        result["run2"] = {
            "ads_before": len(base) + len(filler), "filler_ads": len(filler),
            "grow_seconds": round(grow_seconds, 1),
            "new_ad_cpu_seconds_p50": round(percentile(total_s, 50), 3),
            "new_ad_cpu_seconds_p95": round(percentile(total_s, 95), 3),
            "new_ad_index_cpu_seconds_p95": round(percentile(index_s, 95), 3),
            "new_ad_link_cpu_seconds_p50": round(percentile(link_s, 50), 3),
            "new_ad_link_cpu_seconds_p95": round(percentile(link_s, 95), 3),
            "new_ad_wall_seconds_p95": round(percentile(wall_s, 95), 3),
            "find_networks_seconds": round(components_s, 2),
            "filler_in_networks": sum(1 for f in filler if pred2[f.label] != f.label),
            **pair_metrics(truth2, {k: pred2[k] for k in truth2})}
        print(json.dumps(result["run2"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
