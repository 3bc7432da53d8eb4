"""Ingest speed as users run it: `reunite index` end to end (process start included) vs the naive script.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ingest_bench.py --suite-root ../shared/bench --n 200 --repeat 3

Four parts, all in one run (the machines are shared and noisy: read the ratios):

1. **End to end.** ``reunite index DIR --bank ads --kind ads --workers 1 --quiet`` as a fresh
   process on a fresh data folder (process start, catalog, vector indexes and the linking that
   runs by default all included), against the naive script as a fresh process
   (``imagehash.phash``, ``imagehash.dhash``, ``pdqhash.compute``, one decode each, imports
   included), interleaved per repeat, on two photo sets: ``lfw`` (the first N LFW-size
   250x250 JPEGs of the faces suite) and ``mix`` (the suites' mix of sizes: copydet originals
   up to 1600 px, venue photos, LFW-size photos, as bench/hash_throughput.py picks them), for
   ``--signals hashes`` and the ads defaults (hashes + local features).
2. **Breakdown.** The same command run through ``--probe`` (this file, which wraps the stages
   with timers and then runs the real CLI in-process): start (interpreter start to the verb),
   decode + signals, catalog, vector indexes, linking, other.
3. **Linking at scale.** A bank grown to 10^3 / 10^4 / 10^5 generated ads (stored prints:
   random PDQ keys with thumbnails, inserted in bulk) then N real LFW photos indexed and
   linked through the real path; per-photo CPU and wall cost of linking, with the one-time
   load of the bank's keys shown apart.
4. **Local features at the floor.** In-process on the ``mix`` set: decode + SIFT alone (the
   draft decode to the feature frame, one SIFT pass with reunite's parameters) against
   reunite's per-image cost for the ads defaults (``pipeline.extract``).

``--bound`` adds, to part 1, the naive script's three hashes at their cheapest (one draft decode
per photo, nothing stored, one process per core): a ratio no indexer of those hashes could beat here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, not whichever copy is installed

NAIVE = """
import sys, time
from pathlib import Path
import imagehash, numpy as np, pdqhash
from PIL import Image
n = 0
for p in sorted(Path(sys.argv[1]).iterdir()):
    imagehash.phash(Image.open(p))
    imagehash.dhash(Image.open(p))
    pdqhash.compute(np.asarray(Image.open(p).convert("RGB")))
    n += 1
print(n)
"""

# ``--bound``: the naive script's three hashes at their cheapest, as a bound on what any indexer of those
# hashes could reach here: one decode per photo (JPEG draft to 512 px, what PDQ reads), nothing stored,
# the photos split over one process per core forked after the imports.
ONCE = """
import os, sys
from pathlib import Path
import imagehash, numpy as np, pdqhash
from PIL import Image
paths = sorted(Path(sys.argv[1]).iterdir())
procs = max(1, len(os.sched_getaffinity(0)))
def work(part):
    for p in part:
        im = Image.open(p)
        im.draft("RGB", (512, 512))
        im = im.convert("RGB")
        imagehash.phash(im)
        imagehash.dhash(im)
        pdqhash.compute(np.asarray(im))
children = []
for k in range(procs):
    pid = os.fork()
    if pid == 0:
        work(paths[k::procs])
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print(len(paths))
"""

# --- probe: the real CLI in-process, with timers around its stages -------------------------------

def probe(argv: list[str]) -> None:
    """Run ``reunite`` with ``argv`` and print {stage: seconds} as JSON on the last line."""
    t0 = time.perf_counter()
    spent: dict[str, float] = {}

    def timed(owner: object, attr: str, stage: str) -> None:
        inner = getattr(owner, attr)

        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[stage] = spent.get(stage, 0.0) + time.perf_counter() - start
        setattr(owner, attr, wrapper)

    import importlib

    cli = importlib.import_module("api.cli.main")  # the module (the package exports its main())

    entered: list[float] = []
    real_single = cli.single_threaded_libraries

    def mark() -> None:
        real_single()
        # Loaded lazily by the verb: wrap once they are imported.
        from api.cli import networks as cli_networks
        from indexer import ingest
        from indexer.store import features, indexes, store
        from matcher.networks import links
        real_index = ingest.index_records

        def index_records(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            entered.append(time.perf_counter())  # imports done, catalog open, lock taken
            return real_index(*args, **kwargs)
        ingest.index_records = index_records
        real_run = ingest._run

        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - time spent waiting on the next image
            results = real_run(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(results)
                except StopIteration:
                    return
                finally:
                    spent["decode+signals"] = spent.get("decode+signals", 0.0) + time.perf_counter() - start
                yield item
        ingest._run = run
        timed(store.Store, "_add_batch", "catalog")
        timed(indexes.IndexSet, "apply", "index apply")  # inside _add_batch: moved below
        timed(store.Store, "checkpoint", "vector indexes")
        timed(features, "update_after_ingest", "vector indexes")
        timed(links, "stage_prints", "linking")
        timed(cli_networks, "link_records", "linking")
    cli.single_threaded_libraries = mark
    sys.argv = ["reunite", *argv]
    with contextlib.suppress(SystemExit):
        cli.main()
    end = time.perf_counter()
    # The in-batch index update ran inside the catalog timer: count it once, as indexes.
    apply = spent.pop("index apply", 0.0)
    spent["catalog"] = spent.get("catalog", 0.0) - apply
    spent["vector indexes"] = spent.get("vector indexes", 0.0) + apply
    spent["start"] = (entered[0] - t0) if entered else 0.0
    spent["total_in_process"] = end - t0
    print(json.dumps(spent))


# --- photo sets -------------------------------------------------------------------------------------

def lfw_photos(suite_root: Path, n: int) -> list[Path]:
    return sorted((suite_root / "faces" / "images").glob("*.jpg"))[:n]


def mix_photos(suite_root: Path, n: int) -> list[Path]:
    from bench.hash_throughput import pick_photos
    return pick_photos(suite_root, n)


def copy_set(paths: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths):
        shutil.copyfile(p, folder / f"{i:05d}{p.suffix.lower()}")
    return folder


# --- 1 + 2: end to end and breakdown ------------------------------------------------------------------

# The checkout whose ``reunite`` is timed (``--tree``: another one, e.g. main, for a before/after in one run).
TREE = ROOT
# ``--baseline TREE``: that checkout's ``reunite index`` (its own defaults) timed in each repeat too.
BASELINE: Path | None = None
# ``--workers N`` passed to ``reunite index`` (None: the command's own default).
WORKERS: int | None = None
# ``--bound``: the ONCE script timed in each repeat too.
BOUND = False
# Child processes read their bytecode from here (``bytecode_env``), as an installed package's is.
ENV: dict[str, str] = dict(os.environ)


def bytecode_env(work: Path) -> dict[str, str]:
    """The children's environment: bytecode compiled once into ``work``, as pip does at install.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (this sandbox sets it) every run of a
    checkout compiled its ~90 modules from source again, 0.1-0.4 s of each start
    that no installed copy pays; the naive script's libraries have their bytecode.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    for tree in {ROOT, TREE, *([BASELINE] if BASELINE else [])}:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "api", "indexer", "matcher",
                        "bench"], cwd=tree, env=env, check=True, capture_output=True)
    return env


def wall(cmd: list[str], cwd: Path | None = None) -> float:
    return timed_run(cmd, cwd)[0]


def timed_run(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the process and every process it waited for: the workers included)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd or TREE, capture_output=True, text=True, env=ENV)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu


def index_args(folder: Path, data: Path, signals: str | None, baseline: bool = False) -> list[str]:
    args = ["--data", str(data), "index", str(folder), "--bank", "ads", "--kind", "ads", "--quiet"]
    if WORKERS is not None and not baseline:
        args += ["--workers", str(WORKERS)]
    return args + (["--signals", signals] if signals else [])


def end_to_end(folder: Path, n: int, signals: str | None, repeat: int, work: Path) -> dict:
    ours, peer, ours_cpu, peer_cpu, base, base_cpu, once = [], [], [], [], [], [], []
    for r in range(repeat):
        took, cpu = timed_run([sys.executable, "-c", NAIVE, str(folder)])
        peer.append(took)
        peer_cpu.append(cpu)
        if BOUND:
            once.append(wall([sys.executable, "-c", ONCE, str(folder)]))
        data = work / f"data-{signals or 'default'}-{r}"
        shutil.rmtree(data, ignore_errors=True)
        took, cpu = timed_run([sys.executable, "-m", "api.cli", *index_args(folder, data, signals)])
        ours.append(took)
        ours_cpu.append(cpu)
        shutil.rmtree(data, ignore_errors=True)
        if BASELINE is not None:  # the same command in the baseline checkout, in the same repeat
            took, cpu = timed_run([sys.executable, "-m", "api.cli", *index_args(folder, data, signals,
                                                                                 baseline=True)],
                                  cwd=BASELINE)
            base.append(took)
            base_cpu.append(cpu)
            shutil.rmtree(data, ignore_errors=True)
    ratios = [p / o for o, p in zip(ours, peer, strict=True)]
    data = work / "probe-data"
    shutil.rmtree(data, ignore_errors=True)
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe", str(TREE),
                          *index_args(folder, data, signals)], cwd=TREE, capture_output=True, text=True,
                         env=ENV)
    shutil.rmtree(data, ignore_errors=True)
    breakdown = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {
        "error": out.stderr[-500:]}
    python_start = statistics.median(wall([sys.executable, "-c", "pass"]) for _ in range(3))
    if "start" in breakdown:
        breakdown["start"] += python_start
        named = sum(v for k, v in breakdown.items() if k not in ("total_in_process",))
        breakdown["other"] = breakdown["total_in_process"] + python_start - named
        del breakdown["total_in_process"]
    from indexer.kinds import default_families  # what the ads defaults are today (faces joined them)
    return {"signals": signals or f"default ({','.join(default_families('ads'))})", "photos": n,
            "reunite_s": ours, "naive_s": peer, "reunite_cpu_s": ours_cpu, "naive_cpu_s": peer_cpu,
            "cpu_ratio": statistics.median(p / o for o, p in zip(ours_cpu, peer_cpu, strict=True)),
            "reunite_images_per_s": n / statistics.median(ours),
            "naive_images_per_s": n / statistics.median(peer),
            "ratio_runs": ratios, "ratio": statistics.median(ratios),
            **({"bound_s": once,
                "bound_ratio": statistics.median(p / o for o, p in zip(once, peer, strict=True))}
               if once else {}),
            "breakdown_s": {k: round(v, 3) for k, v in breakdown.items()} if "error" not in breakdown
            else breakdown,
            **({"baseline_s": base, "baseline_cpu_s": base_cpu,
                "baseline_ratio_runs": [p / b for b, p in zip(base, peer, strict=True)],
                "baseline_ratio": statistics.median(p / b for b, p in zip(base, peer, strict=True)),
                "baseline_cpu_ratio": statistics.median(p / b for b, p in zip(base_cpu, peer_cpu,
                                                                              strict=True))}
               if base else {})}


# --- 3: linking at scale ---------------------------------------------------------------------------------

def grow_bank(store, bank, n: int, seed: int = 11) -> None:  # noqa: ANN001
    """``n`` generated ads, each with one stored, already linked print (random PDQ, random thumbnail)."""
    import hashlib

    import numpy as np
    from sqlalchemy import insert, select

    from indexer.store.catalog import Item, Subject
    from matcher.networks.store import AdPhoto, AdPrint, LinkedItem

    rng = np.random.default_rng(seed)
    with store.catalog.session() as s:
        s.execute(insert(Subject), [{"bank_id": bank.id, "label": f"gen-{i}", "pseudonym": f"G{seed}-{i}",
                                     "attributes": {}} for i in range(n)])
        subjects = dict(s.execute(select(Subject.label, Subject.id).where(Subject.bank_id == bank.id)).all())
        s.execute(insert(Item), [{"bank_id": bank.id, "subject_id": subjects[f"gen-{i}"],
                                  "sha256": hashlib.sha256(f"gen-{seed}-{i}".encode()).hexdigest(),
                                  "source": "", "width": 250, "height": 250, "format": "JPEG",
                                  "attributes": {}} for i in range(n)])
        items = list(s.execute(select(Item.id, Item.subject_id).where(Item.bank_id == bank.id)).all())
        keys = rng.integers(0, 256, (len(items), 9, 32), dtype=np.uint8)
        thumbs = rng.integers(0, 256, (len(items), 32 * 32), dtype=np.uint8)
        s.execute(insert(AdPhoto), [{"bank_id": bank.id, "subject_id": sid, "item_id": iid, "attributes": {},
                                     "linked": True} for iid, sid in items])
        s.execute(insert(AdPrint), [{"item_id": iid, "bank_id": bank.id, "pdq": keys[k, 0].tobytes(),
                                     "quality": 1.0, "thumb": thumbs[k].tobytes(),
                                     "variants": keys[k, 1:].tobytes()}
                                    for k, (iid, _sid) in enumerate(items)])
        s.execute(insert(LinkedItem), [{"item_id": iid, "bank_id": bank.id} for iid, _sid in items])


def link_at_scale(sizes: list[int], new_photos: list[Path], work: Path) -> list[dict]:
    out = []
    folder = copy_set(new_photos, work / "new-ads")
    for size in sizes:
        out.append(link_one_size(size, folder, len(new_photos), work))
        print(json.dumps(out[-1]), flush=True)
    return out


def link_one_size(size: int, folder: Path, n: int, work: Path) -> dict:
    """Grow a bank to ``size`` generated ads, then index and link the ``n`` photos of ``folder``."""
    from api.cli.main import link_staging, parse_signals
    from api.cli.networks import link_records
    from indexer import ingest
    from indexer.store.store import Store
    from matcher.networks import links

    data = work / f"scale-{size}"
    shutil.rmtree(data, ignore_errors=True)
    store = Store(data)
    bank = store.catalog.ensure_bank("ads", "ads")
    started = time.perf_counter()
    grow_bank(store, bank, size)
    grown = time.perf_counter() - started
    extras, after_batch = link_staging(store, bank)
    staging = [0.0, 0.0]
    real_stage = links.stage_prints

    def stage(*a, **k):  # noqa: ANN002, ANN003, ANN202
        c, w = time.process_time(), time.perf_counter()
        try:
            return real_stage(*a, **k)
        finally:
            staging[0] += time.process_time() - c
            staging[1] += time.perf_counter() - w
    links.stage_prints = stage
    ingest.index_records(store, bank, ingest.iter_source(folder), parse_signals("hashes", "ads"),
                         picture_extras=extras, after_batch=after_batch)
    links.stage_prints = real_stage
    linker = links.Linker(store)
    with store.catalog.session() as s:
        c, w = time.process_time(), time.perf_counter()
        linker._keys(s, bank)  # the one-time load of the bank's keys, shown apart
        load_cpu, load_wall = time.process_time() - c, time.perf_counter() - w
    real_linker = links.Linker
    links.Linker = lambda *a, **k: linker  # link_records reuses the loaded keys, as one long run would
    c, w = time.process_time(), time.perf_counter()
    summary = link_records(store, bank, ingest.iter_source(folder))
    cpu, wall_s = time.process_time() - c, time.perf_counter() - w
    links.Linker = real_linker
    shutil.rmtree(data, ignore_errors=True)
    return {"ads": size, "new_photos": n, "summary": summary, "grow_s": round(grown, 1),
            "link_ms_per_photo_cpu": round((cpu + staging[0]) / n * 1000, 2),
            "link_ms_per_photo_wall": round((wall_s + staging[1]) / n * 1000, 2),
            "key_load_s_cpu": round(load_cpu, 3), "key_load_s_wall": round(load_wall, 3)}


# --- 4: local features at the floor -----------------------------------------------------------------------

def sift_floor(paths: list[Path], repeat: int) -> dict:
    """CPU ms per photo: the floor (decode + one SIFT pass), reunite's ads pipeline without faces
    (hashes + local features: issue 21's "default ads pipeline") and with every ads default."""
    import cv2

    from indexer import images, pipeline
    from indexer.kinds import default_families
    from indexer.signals import base as signals
    from indexer.signals import local

    cv2.setNumThreads(1)
    blobs = [p.read_bytes() for p in paths]
    names = [s.name for s in signals.select(["hashes", "local"])]
    every = [s.name for s in signals.select(default_families("ads"))]
    sift = cv2.SIFT_create(nfeatures=local.MAX_KEYPOINTS, contrastThreshold=local.CONTRAST_THRESHOLD)

    def floor_one(data: bytes) -> None:
        picture = images.load(data, max_side=local.FEATURE_SIDE, grey=True)
        grey = cv2.cvtColor(picture.shrunk(local.FEATURE_SIDE).rgb, cv2.COLOR_RGB2GRAY)
        sift.detectAndCompute(grey, None)

    def ours_one(data: bytes) -> None:
        pipeline.extract(data, names)

    def every_one(data: bytes) -> None:
        pipeline.extract(data, every)

    every_one(blobs[0])  # the face models load once, outside the timing
    floors, ours, all_defaults = [], [], []
    for _ in range(repeat):
        for fn, sink in ((floor_one, floors), (ours_one, ours), (every_one, all_defaults)):
            start = time.process_time()
            for data in blobs:
                fn(data)
            sink.append((time.process_time() - start) / len(blobs) * 1000)
    ratios = [o / f for o, f in zip(ours, floors, strict=True)]
    return {"signals": names, "photos": len(blobs), "floor_ms": floors, "reunite_ms": ours,
            "ratio_runs": ratios, "ratio": statistics.median(ratios),
            "defaults_signals": every, "defaults_ms": all_defaults,
            "defaults_ratio": statistics.median(d / f for d, f in zip(all_defaults, floors, strict=True))}


def light_verbs(work: Path, repeat: int) -> dict:
    """Wall seconds (median of ``repeat``) of the verbs typed many times a day, on a folder with a bank."""
    data = work / "light"
    shutil.rmtree(data, ignore_errors=True)
    one = copy_set([p for p in sorted((ROOT / "fixtures").glob("*.png"))][:2], work / "light-photos")
    wall([sys.executable, "-m", "api.cli", *index_args(one, data, "hashes")])
    out = {}
    for verb in (["--help"], ["banks"], ["keys", "list"]):
        out[" ".join(verb)] = round(statistics.median(
            wall([sys.executable, "-m", "api.cli", "--data", str(data), *verb]) for _ in range(repeat)), 3)
    out["python -c pass"] = round(statistics.median(wall([sys.executable, "-c", "pass"])
                                                    for _ in range(repeat)), 3)
    shutil.rmtree(data, ignore_errors=True)
    return out


def main() -> None:
    global TREE, WORKERS, ENV, BASELINE, BOUND
    if len(sys.argv) > 2 and sys.argv[1] == "--probe":
        sys.path.insert(0, sys.argv[2])  # the timed checkout's code first
        probe(sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite-root", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sets", default="lfw,mix")
    parser.add_argument("--pipelines", default="hashes,default")
    parser.add_argument("--link-sizes", default="1000,10000,100000")
    parser.add_argument("--link-new", type=int, default=100)
    parser.add_argument("--floor", type=int, default=100,
                        help="photos of the mix for the SIFT floor (0: skip)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="checkout whose `reunite index` is timed (default: this one)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout (e.g. main) whose `reunite index` is timed in each repeat too")
    parser.add_argument("--workers", type=int, default=None,
                        help="--workers for `reunite index` (default: the command's own default)")
    parser.add_argument("--bound", action="store_true",
                        help="also time the naive script's hashes at their cheapest (one decode, every "
                             "core, nothing stored): what no indexer of those hashes can beat here")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    BOUND = args.bound
    work = args.work or Path(tempfile.mkdtemp(prefix="reunite-ingest-bench-"))
    TREE, WORKERS = args.tree.resolve(), args.workers
    BASELINE = args.baseline.resolve() if args.baseline else None
    ENV = bytecode_env(work)
    result: dict = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                               f"Python {platform.python_version()}",
                    "load_before": os.getloadavg(), "command": " ".join(sys.argv), "tree": str(TREE),
                    "baseline": str(BASELINE) if BASELINE else None, "workers": WORKERS, "end_to_end": []}
    result["light_verbs_s"] = light_verbs(work, max(3, args.repeat))
    print(json.dumps(result["light_verbs_s"]), flush=True)
    sets = {"lfw": lfw_photos, "mix": mix_photos}
    for name in [s for s in args.sets.split(",") if s]:
        folder = copy_set(sets[name](args.suite_root, args.n), work / f"set-{name}")
        n = len(list(folder.iterdir()))
        for pipe in [p for p in args.pipelines.split(",") if p]:
            row = end_to_end(folder, n, None if pipe == "default" else pipe, args.repeat, work)
            row["set"] = name
            print(json.dumps(row), flush=True)
            result["end_to_end"].append(row)
    sizes = [int(x) for x in args.link_sizes.split(",") if x]
    if sizes:
        result["link_at_scale"] = link_at_scale(sizes, lfw_photos(args.suite_root, args.n + args.link_new)
                                                [args.n:], work)
    if args.floor:
        result["sift_floor"] = sift_floor(mix_photos(args.suite_root, args.floor), args.repeat)
        print(json.dumps(result["sift_floor"]), flush=True)
    result["load_after"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
