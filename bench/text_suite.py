"""Text in ad photos: a generated suite of real photos with contacts painted as ads paint them.

Backgrounds are the copydet photos of ``../shared/bench`` (read, never copied
into the repository); the painted images go to ``--out-dir`` (default a
folder under /tmp). Fonts are Debian's (``fonts-dejavu-core``,
``fonts-liberation``: ``fc-list`` lists them). Styles:

- ``plain``: white text with a dark outline, one of the fonts, 14-40 px glyphs;
- ``bar``: text on a semi-transparent dark bar (the usual "call me" strip);
- ``colour``: a saturated or pastel colour, no outline, on the photo itself;
- ``rotated``: plain text turned by 5-20 degrees either way;
- ``watermark``: large semi-transparent text across the photo;
- ``chat``: a chat-app screenshot (bubbles, header, the photo as an attachment)
  with the number and a handle written in a message;
- ``small``: plain text at 8-13 px glyphs (below the readable size: reported, not a target);
- ``none``: the photo with distractor text (prices, hours, dates) and no contact;
- ``photo``: the photo alone (what the detector costs when there is nothing to read).

Every picture gets one random valid US phone number (in one of six formats)
and most a handle (``@name``, ``Telegram: name``, ``t.me/name``, ``IG @name``).
The glyph height is that of the digit ``0`` in the chosen font and size.
Extracted phones and handles are compared with the painted ones: recall per
style (painted and found), precision per style (found and painted, over all
found), the cost per image (p50/p95 of wall seconds) and the cost of a
photo without text (the detector alone: what a pre-check could save).

    .venv/bin/python bench/text_suite.py --per-style 20 --out bench/results/text.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import phonenumbers
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer import pipeline  # noqa: E402
from matcher.networks.photo_contacts import read_contacts  # noqa: E402

SHARED = ROOT.parent / "shared" / "bench"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansCondensed-Bold.ttf",
              "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSerif-Bold.ttf",
              "LiberationMono-Regular.ttf", "LiberationSansNarrow-Regular.ttf")
PHONE_FORMATS = ("({a}) {e}-{l}", "{a}.{e}.{l}", "+1 {a} {e} {l}", "{a}-{e}-{l}", "{a} {e} {l}",
                 "1-{a}-{e}-{l}")
AREAS = ("212", "312", "415", "646", "702", "713", "305", "404", "617", "206", "503", "917")
HANDLE_FORMATS = ("@{h}", "Telegram: {h}", "t.me/{h}", "IG @{h}", "Snap: {h}", "WhatsApp / Telegram @{h}")
WORDS = ("lily", "rose", "candy", "sweet", "honey", "angel", "kitty", "bella", "luna", "star", "vip", "new")
PREFIXES = ("Call", "Text", "Call me", "WhatsApp", "Tel", "Call or text", "", "")
DISTRACTORS = ("New in town", "100% real photos", "Open 24/7", "$200 / 1 hour", "Incall & outcall",
               "May 12 - May 20", "Available now", "No rush", "Best service 2024")
STYLES = ("plain", "bar", "colour", "rotated", "watermark", "chat", "small", "none", "photo")
READABLE_PX = 14


def fonts() -> list[Path]:
    found = [d / n for d in FONT_DIRS for n in FONT_NAMES if (d / n).exists()]
    if not found:
        raise SystemExit("no Debian fonts: apt-get install fonts-dejavu-core fonts-liberation")
    return found


def random_phone(rng: random.Random) -> tuple[str, str]:
    """(text as painted, E.164) of a random valid US number."""
    while True:
        a, e, last = rng.choice(AREAS), f"{rng.randint(200, 999)}", f"{rng.randint(0, 9999):04d}"
        number = phonenumbers.parse(f"+1{a}{e}{last}")
        if phonenumbers.is_valid_number(number) and e != "555":
            text = rng.choice(PHONE_FORMATS).format(a=a, e=e, l=last)
            return text, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def random_handle(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(WORDS) + rng.choice(("_", "", ".")) + rng.choice(WORDS) + str(rng.randint(1, 99))
    return rng.choice(HANDLE_FORMATS).format(h=name), "@" + name.lower()


def font_for_glyph(path: Path, glyph_px: int) -> ImageFont.FreeTypeFont:
    """The font at the size whose digit ``0`` is ``glyph_px`` pixels high."""
    size = glyph_px
    for _ in range(6):
        f = ImageFont.truetype(str(path), size)
        box = f.getbbox("0")
        height = box[3] - box[1]
        if height == glyph_px:
            break
        size = max(4, round(size * glyph_px / max(height, 1)))
    return ImageFont.truetype(str(path), size)


def background(rng: random.Random, pool: list[Path], side: int = 800) -> Image.Image:
    img = Image.open(rng.choice(pool)).convert("RGB")
    scale = side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))


def _text_layer(size: tuple[int, int], lines: list[str], font: ImageFont.FreeTypeFont, fill: tuple,
                at: tuple[int, int], stroke: bool, bar: bool) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    text = "\n".join(lines)
    spacing = max(4, font.size // 3)
    box = draw.multiline_textbbox(at, text, font=font, spacing=spacing)
    if bar:
        pad = max(6, font.size // 3)
        draw.rectangle((0, box[1] - pad, size[0], box[3] + pad), fill=(0, 0, 0, 140))
    draw.multiline_text(at, text, font=font, fill=fill, spacing=spacing,
                        stroke_width=max(1, font.size // 14) if stroke else 0, stroke_fill=(0, 0, 0, 255))
    return layer


def paint(style: str, rng: random.Random, pool: list[Path], font_paths: list[Path]
          ) -> tuple[Image.Image, list[str], list[str], int]:
    """A painted picture, its phones (E.164), handles, and the glyph height used."""
    img = background(rng, pool)
    phones: list[str] = []
    handles: list[str] = []
    lines: list[str] = []
    if style == "photo":
        return img, phones, handles, 0
    if style != "none":
        text, e164 = random_phone(rng)
        prefix = rng.choice(PREFIXES)
        lines.append(f"{prefix} {text}".strip())
        phones.append(e164)
        if rng.random() < 0.7:
            htext, handle = random_handle(rng)
            lines.append(htext)
            handles.append(handle)
    else:
        lines = rng.sample(DISTRACTORS, 2)
    if style == "chat":
        return chat_screenshot(img, lines, rng, font_paths), phones, handles, 15
    out, glyph = paint_lines(img, style, lines, rng, font_paths)
    return out, phones, handles, glyph


def paint_lines(img: Image.Image, style: str, lines: list[str], rng: random.Random, font_paths: list[Path]
                ) -> tuple[Image.Image, int]:
    """``lines`` painted on ``img`` in ``style`` at a random glyph height; returns (picture, glyph px)."""
    glyph = rng.randint(8, 13) if style == "small" else rng.randint(READABLE_PX, 40)
    if style == "watermark":
        glyph = rng.randint(28, 48)
    font = font_for_glyph(rng.choice(font_paths), glyph)
    text_w = max(font.getbbox(line)[2] for line in lines)
    x = rng.randint(8, max(8, img.width - text_w - 8))
    y = rng.randint(8, max(8, img.height - (glyph * 2 + 30) * len(lines)))
    fill: tuple = (255, 255, 255, 255)
    stroke = style in ("plain", "rotated", "small", "none")
    if style == "colour":
        fill = rng.choice(((255, 40, 120, 255), (255, 230, 0, 255), (0, 230, 255, 255), (255, 140, 0, 255),
                           (255, 182, 193, 255), (40, 40, 40, 255)))
    if style == "watermark":
        fill = (255, 255, 255, rng.randint(110, 170))
    layer = _text_layer(img.size, lines, font, fill, (x, y), stroke, style == "bar")
    if style == "rotated":
        angle = rng.choice((-1, 1)) * rng.uniform(5, 20)
        layer = layer.rotate(angle, resample=Image.BICUBIC, center=(x, y))
    out = img.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB"), glyph


def chat_screenshot(photo: Image.Image, lines: list[str], rng: random.Random, font_paths: list[Path]
                    ) -> Image.Image:
    """A phone-sized chat screenshot: header, the photo as an attachment, messages in bubbles."""
    w, h = 720, 1280
    dark = rng.random() < 0.5
    bg = (17, 27, 33) if dark else (236, 229, 221)
    canvas = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(canvas)
    ui = font_for_glyph(rng.choice(font_paths), 15)
    draw.rectangle((0, 0, w, 110), fill=(32, 44, 51) if dark else (0, 128, 105))
    draw.text((110, 40), rng.choice(WORDS).title() + " " + rng.choice(("online", "typing...", "")), font=ui,
              fill=(255, 255, 255))
    thumb = photo.copy()
    thumb.thumbnail((460, 460))
    canvas.paste(thumb, (w - thumb.width - 30, 140))
    y = 160 + thumb.height
    msgs = ["hi", *lines, rng.choice(("ok", "see you", "how much?"))]
    for i, msg in enumerate(msgs):
        box = draw.textbbox((0, 0), msg, font=ui)
        bw, bh = box[2] + 40, box[3] + 30
        left = 30 if i % 2 == 0 else w - bw - 30
        colour = ((32, 44, 51) if i % 2 == 0 else (0, 92, 75)) if dark else \
            ((255, 255, 255) if i % 2 == 0 else (220, 248, 198))
        draw.rounded_rectangle((left, y, left + bw, y + bh), radius=14, fill=colour)
        draw.text((left + 20, y + 12), msg, font=ui, fill=(233, 237, 239) if dark else (17, 27, 33))
        y += bh + 24
    return canvas


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-style", type=int, default=20)
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/text-suite"), help="Painted images go here.")
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--styles", default=",".join(STYLES))
    ap.add_argument("--precheck-only", action="store_true",
                    help="Run only the pre-check (the detector on a small copy) on the images in --out-dir: "
                         "per style, how many pass it, and its cost per image.")
    args = ap.parse_args()
    if args.precheck_only:
        return precheck_only(args.out_dir)
    rng = random.Random(args.seed)
    pool = sorted((args.shared / "copydet" / "images").glob("g*.jpg"))
    if not pool:
        raise SystemExit(f"no backgrounds under {args.shared}/copydet/images")
    font_paths = fonts()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    seconds: list[float] = []
    empty_seconds: list[float] = []
    misses: list[dict] = []
    warm, *_ = paint("plain", random.Random(0), pool, font_paths)
    pipeline.extract(_png(warm), ["ocr"])  # the engine is built once per process; not timed
    for style in args.styles.split(","):
        for n in range(args.per_style):
            img, phones, handles, glyph = paint(style, rng, pool, font_paths)
            path = args.out_dir / f"{style}-{n:03d}.png"
            img.save(path)
            data = path.read_bytes()
            t0 = time.perf_counter()
            lines = pipeline.extract(data, ["ocr"]).annotations
            dt_s = time.perf_counter() - t0
            seconds.append(dt_s)
            if style == "photo":
                empty_seconds.append(dt_s)
            found = [f for a in lines for f in read_contacts(a.text, "US")]
            got_phones = {f.value for f in found if f.kind == "phone"}
            got_handles = {f.value for f in found if f.kind == "handle"}
            s = per[style]
            s["images"] += 1
            s["phones"] += len(phones)
            s["phones_found"] += len(set(phones) & got_phones)
            s["phones_extracted"] += len(got_phones)
            s["phones_wrong"] += len(got_phones - set(phones))
            s["handles"] += len(handles)
            s["handles_found"] += len(set(handles) & got_handles)
            s["handles_extracted"] += len(got_handles)
            s["handles_wrong"] += len(got_handles - set(handles))
            s["glyph_px_sum"] += glyph
            if set(phones) - got_phones or got_phones - set(phones):
                misses.append({"image": str(path), "style": style, "glyph_px": glyph, "painted": phones,
                               "read": [a.text for a in lines]})
    report = {"styles": {}, "suite": f"{args.per_style} per style, seed {args.seed}, backgrounds: copydet"}
    for style, s in per.items():
        report["styles"][style] = {
            "images": int(s["images"]),
            "phone_recall": _ratio(s["phones_found"], s["phones"]),
            "phone_precision": _ratio(s["phones_extracted"] - s["phones_wrong"], s["phones_extracted"]),
            "phones_wrong": int(s["phones_wrong"]),
            "handle_recall": _ratio(s["handles_found"], s["handles"]),
            "handle_precision": _ratio(s["handles_extracted"] - s["handles_wrong"], s["handles_extracted"]),
            "mean_glyph_px": round(s["glyph_px_sum"] / max(s["images"], 1), 1)}
    readable = [s for st, s in per.items() if st not in ("small", "none", "photo")]
    tot = {k: sum(s[k] for s in readable) for k in ("phones", "phones_found", "phones_extracted",
                                                     "phones_wrong", "handles", "handles_found",
                                                     "handles_extracted", "handles_wrong")}
    wrong_all = sum(s["phones_wrong"] for s in per.values())
    extracted_all = sum(s["phones_extracted"] for s in per.values())
    report["readable"] = {
        "phone_recall": _ratio(tot["phones_found"], tot["phones"]),
        "phone_precision_all_styles": _ratio(extracted_all - wrong_all, extracted_all),
        "handle_recall": _ratio(tot["handles_found"], tot["handles"]),
        "handle_precision": _ratio(tot["handles_extracted"] - tot["handles_wrong"], tot["handles_extracted"])}
    report["seconds_per_image"] = {"p50": round(statistics.median(seconds), 3),
                                   "p95": round(percentile(seconds, 0.95), 3), "n": len(seconds)}
    if empty_seconds:
        report["seconds_photo_without_painted_text"] = {
            "p50": round(statistics.median(empty_seconds), 3),
            "p95": round(percentile(empty_seconds, 0.95), 3), "n": len(empty_seconds)}
    report["misses"] = misses[:40]
    text = json.dumps(report, indent=2)
    print(json.dumps({k: v for k, v in report.items() if k != "misses"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


def precheck_only(folder: Path) -> None:
    """How many painted images of each style the pre-check passes on to the full OCR pass, and its cost."""
    from indexer import images
    from indexer.signals.text import OCR

    assert OCR is not None, "the text extra (rapidocr) is not installed"
    passed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    seconds: list[float] = []
    for path in sorted(folder.glob("*.png")):
        style = path.name.split("-")[0]
        picture = images.load(path.read_bytes(), max_side=OCR.decode_side)
        bgr = picture.rgb[:, :, ::-1].copy()
        t0 = time.perf_counter()
        found = OCR.has_text_region(bgr)
        seconds.append(time.perf_counter() - t0)
        passed[style][0] += 1
        passed[style][1] += int(found)
    print(json.dumps({"precheck_side": OCR.precheck_side,
                      "styles": {k: {"images": v[0], "passed": v[1]} for k, v in passed.items()},
                      "seconds_per_image": {"p50": round(statistics.median(seconds), 3),
                                            "p95": round(percentile(seconds, 0.95), 3)}}, indent=1))


def _png(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


if __name__ == "__main__":
    main()
