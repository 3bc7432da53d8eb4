"""The demo job behind ``make run``: index fixtures/, match edited reposts, say what next.

It shows the main batch job end to end on the embedded default (SQLite +
FAISS in a local data folder): a crawl of ad photos is indexed, then reposts
of those photos (recompressed, resized, mirrored) are matched back to them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def make_reposts(folder: Path) -> list[Path]:
    """Edited copies of two fixture photos, as an ad poster would repost them."""
    out = []
    for name in ("astronaut.png", "coffee.png"):
        img = Image.open(FIXTURES / name).convert("RGB")
        stem = Path(name).stem
        half = img.resize((img.width // 2, img.height // 2))
        half.save(folder / f"{stem}-repost-q50.jpg", quality=50)
        ImageOps.mirror(img).save(folder / f"{stem}-mirrored.jpg", quality=85)
        out += [folder / f"{stem}-repost-q50.jpg", folder / f"{stem}-mirrored.jpg"]
    return out


def write_crawl(data: Path) -> Path:
    """A manifest of the fixture photos as a crawl (one ad each); fixtures/pdq and licences stay out."""
    data.mkdir(parents=True, exist_ok=True)
    manifest = data / "demo-crawl.csv"
    photos = sorted(p for p in FIXTURES.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    manifest.write_text("path,label\n" + "".join(f"{p},{p.stem}\n" for p in photos), encoding="utf-8")
    return manifest


def run(cmd: list[str]) -> str:
    print("$ " + " ".join(cmd[2:] if cmd[:2] == [sys.executable, "-m"] else cmd), flush=True)
    done = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="reunite-data")
    args = parser.parse_args()
    reunite = [sys.executable, "-m", "api.cli", "--data", args.data]
    print(run(reunite + ["index", str(write_crawl(Path(args.data))), "--bank", "demo-ads",
                         "--kind", "ads", "--quiet"]))
    with tempfile.TemporaryDirectory() as tmp:
        queries = make_reposts(Path(tmp))
        output = run(reunite + ["match", *map(str, queries), "--bank", "demo-ads", "--top", "3",
                                "--json"])
    for line in output.splitlines():
        answer = json.loads(line)
        best = answer["candidates"][0] if answer["candidates"] else None
        found = f"{best['label']} ({best['decision']}, score {best['score']})" if best else "none"
        print(f"  {Path(answer['query']).name:28} -> {found}")
    print(f"""
Demo data folder: {args.data}
Try next:
  .venv/bin/reunite --data {args.data} banks
  .venv/bin/reunite --data {args.data} match fixtures/chelsea.png --bank demo-ads --json
  .venv/bin/reunite --data {args.data} index YOUR_CRAWL_FOLDER --bank ads --workers 2
  .venv/bin/reunite --data {args.data} keys create --role reviewer --name me   # key on the last line
  .venv/bin/reunite --data {args.data} serve    # API at http://127.0.0.1:8000/docs, reviewers at /review
""")


if __name__ == "__main__":
    main()
