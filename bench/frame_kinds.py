"""Frames that ads and messengers wrap photos in, drawn with Pillow for bench/frames_suite.py.

Every frame kind is a function ``(photo, rng) -> picture`` whose chrome (bars,
icons, fixed labels, borders, watermark) is the same every time it is drawn,
while a few per-post details (user name, caption, time, likes) change, as in
real screenshots of one app. Sizes are those ads use: phone screenshots at
720x1280 / 750x1334 / 1080x1920 shown at 720 px wide, site cards 600x820,
collages 800x800 / 1200x420.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Frame = Callable[[Image.Image, np.random.Generator], Image.Image]
NAMES = ["lina.k", "sweet_anna", "mila_new", "roxy.vip", "jess_24", "nora.here", "kate_m", "vika"]
CAPTIONS = ["new in town, call me", "available tonight", "sweet and discreet", "text only please",
            "visiting this week", "outcall only", "real photos 100%", "ask for rates"]


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _fit(photo: Image.Image, box: tuple[int, int], cover: bool = False) -> Image.Image:
    """``photo`` scaled into ``box`` (w, h): inside it, or covering it and centre-cropped."""
    w, h = box
    f = (max if cover else min)(w / photo.width, h / photo.height)
    out = photo.resize((max(1, round(photo.width * f)), max(1, round(photo.height * f))),
                       Image.Resampling.LANCZOS)
    if cover:
        left, top = (out.width - w) // 2, (out.height - h) // 2
        out = out.crop((left, top, left + w, top + h))
    return out


def _status_bar(draw: ImageDraw.ImageDraw, width: int, height: int, fg: tuple[int, int, int],
                rng: np.random.Generator) -> None:
    """Clock on the left, signal bars, wifi and battery on the right (the time varies)."""
    font = _font(int(height * 0.6))
    draw.text((int(width * 0.05), int(height * 0.18)),
              f"{int(rng.integers(0, 24)):d}:{int(rng.integers(0, 60)):02d}", fill=fg, font=font)
    x = int(width * 0.72)
    for i in range(4):
        bh = int(height * (0.2 + 0.15 * i))
        draw.rectangle((x + i * 9, height - 8 - bh, x + i * 9 + 5, height - 8), fill=fg)
    draw.arc((x + 48, 10, x + 78, 40), 200, 340, fill=fg, width=4)
    bx = int(width * 0.88)
    draw.rectangle((bx, 12, bx + 50, height - 12), outline=fg, width=3)
    draw.rectangle((bx + 4, 16, bx + 4 + int(42 * rng.uniform(0.3, 1.0)), height - 16), fill=fg)
    draw.rectangle((bx + 50, height // 2 - 5, bx + 55, height // 2 + 5), fill=fg)


def _icons(draw: ImageDraw.ImageDraw, y: int, width: int, fg: tuple[int, int, int], size: int) -> None:
    """A row of outline icons (heart, bubble, arrow, bookmark) as in a feed post."""
    x = int(width * 0.04)
    draw.ellipse((x, y, x + size, y + size), outline=fg, width=4)
    x += int(size * 1.6)
    draw.rounded_rectangle((x, y, x + size, y + int(size * 0.8)), radius=size // 4, outline=fg, width=4)
    x += int(size * 1.6)
    draw.polygon([(x, y + size // 2), (x + size, y), (x + size // 2, y + size)], outline=fg, width=4)
    bx = width - int(width * 0.04) - size
    draw.polygon([(bx, y), (bx + size, y), (bx + size, y + size), (bx + size // 2, y + int(size * 0.7)),
                  (bx, y + size)], outline=fg, width=4)


def _nav_bar(draw: ImageDraw.ImageDraw, top: int, width: int, height: int,
             fg: tuple[int, int, int], bg: tuple[int, int, int]) -> None:
    draw.rectangle((0, top, width, top + height), fill=bg)
    step = width // 5
    for i in range(5):
        cx, cy, r = step * i + step // 2, top + height // 2, height // 4
        if i % 2:
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), outline=fg, width=4)
        else:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fg, width=4)


def app_feed(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A light photo-feed app, 1080x1920 shown at 720x1280: header, avatar and name, square photo."""
    w, h = 1080, 1920
    page = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    _status_bar(draw, w, 70, (20, 20, 20), rng)
    draw.text((40, 95), "Pictagram", fill=(20, 20, 20), font=_font(64))
    _icons(draw, 105, w, (20, 20, 20), 50)
    draw.line((0, 200, w, 200), fill=(219, 219, 219), width=2)
    draw.ellipse((30, 225, 130, 325), fill=(225, 48, 108))
    draw.ellipse((38, 233, 122, 317), fill=(240, 240, 240))
    draw.text((155, 250), NAMES[int(rng.integers(len(NAMES)))], fill=(20, 20, 20), font=_font(40))
    draw.text((w - 90, 240), "...", fill=(20, 20, 20), font=_font(50))
    page.paste(_fit(photo, (w, w), cover=True), (0, 350))
    _icons(draw, 350 + w + 30, w, (20, 20, 20), 64)
    draw.text((40, 350 + w + 120), f"{int(rng.integers(12, 9000))} likes", fill=(20, 20, 20), font=_font(38))
    draw.text((40, 350 + w + 180), CAPTIONS[int(rng.integers(len(CAPTIONS)))], fill=(40, 40, 40),
              font=_font(38))
    _nav_bar(draw, h - 150, w, 150, (20, 20, 20), (250, 250, 250))
    return page.resize((720, 1280), Image.Resampling.LANCZOS)


def app_chat(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A messenger, 720x1280: dark green header, wallpaper, the photo in a chat bubble, input bar."""
    w, h = 720, 1280
    page = Image.new("RGB", (w, h), (229, 221, 213))
    draw = ImageDraw.Draw(page)
    for y in range(150, h - 110, 60):  # wallpaper doodles
        for x in range(20 + (y // 60 % 2) * 30, w, 90):
            draw.ellipse((x, y, x + 14, y + 14), outline=(214, 205, 196), width=2)
    draw.rectangle((0, 0, w, 150), fill=(7, 94, 84))
    _status_bar(draw, w, 48, (255, 255, 255), rng)
    draw.ellipse((60, 65, 130, 135), fill=(200, 200, 200))
    draw.text((150, 70), NAMES[int(rng.integers(len(NAMES)))], fill=(255, 255, 255), font=_font(32))
    draw.text((150, 108), "online", fill=(210, 230, 225), font=_font(22))
    draw.text((20, 80), "<", fill=(255, 255, 255), font=_font(40))
    shown = _fit(photo, (500, 620))
    bx, by = w - shown.width - 40, 220
    draw.rounded_rectangle((bx - 10, by - 10, bx + shown.width + 10, by + shown.height + 60), radius=18,
                           fill=(220, 248, 198))
    page.paste(shown, (bx, by))
    draw.text((bx + shown.width - 110, by + shown.height + 15),
              f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d} vv", fill=(110, 130, 110),
              font=_font(22))
    ty = by + shown.height + 100
    draw.rounded_rectangle((30, ty, 430, ty + 70), radius=18, fill=(255, 255, 255))
    draw.text((50, ty + 20), CAPTIONS[int(rng.integers(len(CAPTIONS)))], fill=(30, 30, 30), font=_font(26))
    draw.rectangle((0, h - 110, w, h), fill=(240, 240, 240))
    draw.rounded_rectangle((20, h - 95, w - 110, h - 20), radius=36, fill=(255, 255, 255))
    draw.text((60, h - 75), "Message", fill=(150, 150, 150), font=_font(30))
    draw.ellipse((w - 95, h - 95, w - 20, h - 20), fill=(0, 150, 136))
    return page


def app_dark(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A dark short-video / story app, 750x1334 shown at 720x1281: full-bleed photo, overlays."""
    w, h = 750, 1334
    page = Image.new("RGB", (w, h), (0, 0, 0))
    draw = ImageDraw.Draw(page)
    shown = _fit(photo, (w, 1000))
    page.paste(shown, ((w - shown.width) // 2, 140 + (1000 - shown.height) // 2))
    _status_bar(draw, w, 50, (255, 255, 255), rng)
    draw.text((250, 70), "Following  |  For You", fill=(255, 255, 255), font=_font(30))
    for i, label in enumerate(("12.4K", "310", "Share")):
        y = 600 + i * 140
        draw.ellipse((w - 95, y, w - 25, y + 70), outline=(255, 255, 255), width=5)
        draw.text((w - 95, y + 80), label, fill=(255, 255, 255), font=_font(22))
    draw.rectangle((0, h - 190, w, h - 100), fill=(20, 20, 20))
    draw.text((30, h - 175), "@" + NAMES[int(rng.integers(len(NAMES)))], fill=(255, 255, 255),
              font=_font(30))
    draw.text((30, h - 135), CAPTIONS[int(rng.integers(len(CAPTIONS)))], fill=(220, 220, 220),
              font=_font(24))
    _nav_bar(draw, h - 100, w, 100, (255, 255, 255), (0, 0, 0))
    return page.resize((720, 1281), Image.Resampling.LANCZOS)


def site_card(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """An ad site's listing card, 600x820: logo bar, photo, title, price, fixed buttons."""
    w, h = 600, 820
    page = Image.new("RGB", (w, h), (244, 244, 248))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, w, 70), fill=(120, 20, 60))
    draw.text((20, 15), "CityGirls.example", fill=(255, 255, 255), font=_font(36))
    draw.rounded_rectangle((20, 90, w - 20, h - 20), radius=14, fill=(255, 255, 255),
                           outline=(210, 210, 220), width=2)
    page.paste(_fit(photo, (w - 60, 440), cover=True), (30, 100))
    draw.text((40, 560), CAPTIONS[int(rng.integers(len(CAPTIONS)))].title(), fill=(30, 30, 30),
              font=_font(30))
    draw.text((40, 605), f"${int(rng.integers(8, 40)) * 10} / hr  -  {NAMES[int(rng.integers(8))]}",
              fill=(120, 20, 60), font=_font(28))
    draw.text((40, 650), "Verified  *  Incall  *  Outcall", fill=(110, 110, 110), font=_font(24))
    for i, label in enumerate(("CALL", "TEXT", "SAVE")):
        x = 40 + i * 180
        draw.rounded_rectangle((x, 710, x + 160, 770), radius=10, fill=(120, 20, 60))
        draw.text((x + 45, 725), label, fill=(255, 255, 255), font=_font(28))
    return page


def watermark_border(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A studio's frame: thick dark border with the studio name, a translucent mark on the photo."""
    shown = _fit(photo, (640, 640))
    bw = 60
    page = Image.new("RGB", (shown.width + 2 * bw, shown.height + 2 * bw + 60), (28, 28, 34))
    draw = ImageDraw.Draw(page)
    draw.rectangle((bw - 8, bw - 8, bw + shown.width + 7, bw + shown.height + 7), outline=(201, 168, 76),
                   width=4)
    page.paste(shown, (bw, bw))
    draw.text((bw, 12), "VELVET STUDIO  -  exclusive photos", fill=(201, 168, 76), font=_font(30))
    draw.text((bw, bw + shown.height + 20), "www.velvet-studio.example   +1 555 0100",
              fill=(201, 168, 76), font=_font(28))
    overlay = Image.new("RGBA", page.size, (0, 0, 0, 0))
    od = ImageDraw.Draw(overlay)
    od.text((bw + shown.width - 260, bw + shown.height - 70), "VELVET", fill=(255, 255, 255, 110),
            font=_font(56))
    return Image.alpha_composite(page.convert("RGBA"), overlay).convert("RGB")


def meme(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A caption meme: white bars above and below the photo with bold black text."""
    shown = _fit(photo, (600, 600))
    top, bottom = 110, 90
    page = Image.new("RGB", (shown.width, shown.height + top + bottom), (255, 255, 255))
    page.paste(shown, (0, top))
    draw = ImageDraw.Draw(page)
    draw.text((20, 25), CAPTIONS[int(rng.integers(len(CAPTIONS)))].upper(), fill=(0, 0, 0),
              font=_font(44))
    draw.text((20, top + shown.height + 20), "when he says he's 'just looking'", fill=(0, 0, 0),
              font=_font(34))
    return page


def collage(photo: Image.Image, others: list[Image.Image], rows: int, cols: int, slot: int,
            size: tuple[int, int], gap: int = 8) -> Image.Image:
    """``photo`` in cell ``slot`` of a rows x cols collage, ``others`` in the other cells, white gaps."""
    w, h = size
    cw, ch = (w - gap * (cols + 1)) // cols, (h - gap * (rows + 1)) // rows
    page = Image.new("RGB", size, (255, 255, 255))
    pool = iter(others)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        cell = photo if i == slot else next(pool)
        page.paste(_fit(cell, (cw, ch), cover=True), (gap + c * (cw + gap), gap + r * (ch + gap)))
    return page


def paste(photo: Image.Image, background: Image.Image, rng: np.random.Generator,
          share: float = 1 / 3) -> Image.Image:
    """``photo`` scaled to ``share`` of the background's width, pasted at a random spot."""
    page = _fit(background, (800, 800)).copy()
    shown = _fit(photo, (int(page.width * share), int(page.height * share)))
    x = int(rng.integers(0, max(1, page.width - shown.width)))
    y = int(rng.integers(0, max(1, page.height - shown.height)))
    page.paste(shown, (x, y))
    return page


FRAMES: dict[str, Frame] = {"app_feed": app_feed, "app_chat": app_chat, "app_dark": app_dark,
                            "site_card": site_card, "watermark_border": watermark_border, "meme": meme}
