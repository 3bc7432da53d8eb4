"""The safe loader: every kind of hostile or unusual input a crawl contains."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from indexer import images
from tests.conftest import jpeg_bytes, photo, png_bytes


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a bomb's shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_plain_jpeg_decodes_to_rgb() -> None:
    pic = images.load(jpeg_bytes(photo("coffee.png")))
    assert pic.rgb.dtype == np.uint8 and pic.rgb.shape == (400, 600, 3)
    assert pic.format == "JPEG" and pic.original_size == (600, 400)


def test_zero_byte_file_is_corrupt(tmp_path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(images.CorruptImage, match="empty"):
        images.load(empty)


def test_text_renamed_jpg_is_unsupported(tmp_path) -> None:
    fake = tmp_path / "ad.jpg"
    fake.write_text("<html><body>not a photo</body></html>")
    with pytest.raises(images.UnsupportedImage, match="not a recognised image"):
        images.load(fake)


def test_truncated_jpeg_is_corrupt() -> None:
    data = jpeg_bytes(photo("astronaut.png"))
    with pytest.raises(images.CorruptImage):
        images.load(data[: len(data) // 2])


def test_truncated_header_is_corrupt_not_unsupported() -> None:
    data = jpeg_bytes(photo("astronaut.png"))
    with pytest.raises(images.CorruptImage):
        images.load(data[:200])


def test_damaged_png_is_corrupt() -> None:
    data = bytearray(png_bytes(photo("chelsea.png")))
    data[200:400] = b"\x00" * 200
    with pytest.raises(images.CorruptImage):
        images.load(bytes(data))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(images.ImageTooLarge, match="decompression bomb"):
        images.load(_png_claiming(100_000, 100_000))


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(images.ImageTooLarge):
        images.load(jpeg_bytes(photo("coffee.png")), max_pixels=1000)


def test_byte_limit_refuses_huge_uploads() -> None:
    with pytest.raises(images.ImageTooLarge, match="bytes"):
        images.load(b"\xff\xd8\xff" + b"\x00" * 2048, max_bytes=1024)


def test_format_outside_allow_list_is_refused() -> None:
    buf = io.BytesIO()
    photo("coffee.png").resize((64, 64)).save(buf, "ICO")
    with pytest.raises(images.UnsupportedImage, match="ICO"):
        images.load(buf.getvalue())


def test_animated_gif_uses_first_frame() -> None:
    red = Image.new("RGB", (40, 30), (255, 0, 0))
    blue = Image.new("RGB", (40, 30), (0, 0, 255))
    buf = io.BytesIO()
    red.save(buf, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    pic = images.load(buf.getvalue())
    assert pic.frames == 2
    r, g, b = pic.rgb[15, 20]
    assert r > 200 and b < 50


def test_cmyk_jpeg_converts_to_rgb() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).convert("CMYK").save(buf, "JPEG", quality=95)
    pic = images.load(buf.getvalue())
    r, g, b = (int(v) for v in pic.rgb[16, 16])
    assert r > 150 and g < 90 and b < 90


def test_sixteen_bit_png_keeps_its_tones() -> None:
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    pic = images.load(buf.getvalue())
    grey = pic.rgb[..., 0].astype(int)
    # Pillow's naive convert would clip almost everything to white.
    assert grey.min() < 10 and grey.max() > 245 and 100 < grey.mean() < 155


def test_transparent_png_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    pic = images.load(png_bytes(rgba))
    assert pic.rgb.min() == 255


def test_palette_bmp_webp_tiff_all_decode() -> None:
    src = photo("rocket.jpg").resize((64, 48))
    for fmt, img in (("BMP", src), ("WEBP", src), ("TIFF", src), ("PNG", src.convert("P"))):
        buf = io.BytesIO()
        img.save(buf, fmt)
        pic = images.load(buf.getvalue())
        assert pic.rgb.shape == (48, 64, 3), fmt


def test_exif_rotation_is_applied() -> None:
    img = photo("coffee.png")  # 600x400, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=90)
    pic = images.load(buf.getvalue())
    assert pic.rgb.shape[:2] == (600, 400)
    assert pic.original_size == (400, 600)
    upright = np.asarray(img.rotate(-90, expand=True), dtype=int)
    assert np.abs(pic.rgb.astype(int) - upright).mean() < 8


def test_reduced_size_decode_uses_jpeg_draft() -> None:
    big = photo("astronaut.png").resize((2048, 2048))
    pic = images.load(jpeg_bytes(big), max_side=300)
    assert max(pic.size) <= 300
    assert pic.original_size == (2048, 2048)


def test_shrunk_views_are_cached_and_bounded() -> None:
    pic = images.load(jpeg_bytes(photo("astronaut.png")))
    small = pic.shrunk(100)
    assert max(small.size) == 100 and pic.shrunk(100) is small
    assert pic.shrunk(5000) is pic


def test_grey_decode_keeps_luma_and_shape() -> None:
    data = jpeg_bytes(photo("chelsea.png"))
    colour = images.load(data, max_side=256)
    grey = images.load(data, max_side=256, grey=True)
    assert grey.rgb.shape == colour.rgb.shape
    assert np.array_equal(grey.rgb[..., 0], grey.rgb[..., 2])
    assert np.abs(grey.rgb[..., 0].astype(int) - colour.gray.astype(int)).mean() < 3


def big_canvas_gif(frames: int, width: int = 7000, height: int = 7000) -> bytes:
    """A GIF whose canvas is ``width`` x ``height`` but whose frames are 1x1 (23 bytes each).

    Written block by block (GIF89a: header, 2-colour table, then per frame a graphic
    control extension and a 1x1 image); Pillow reads it as an ordinary animated GIF.
    """
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff")
    for n in range(frames):
        out += b"\x21\xf9\x04\x00\x02\x00\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", n % width, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return bytes(out + b"\x3b")


def test_ten_thousand_frames_are_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frames of a GIF are counted from its blocks; Pillow never seeks past the first one."""
    seeks: list[int] = []
    original = GifImagePlugin.GifImageFile._seek

    def counting(self: GifImagePlugin.GifImageFile, frame: int, update_image: bool = True) -> None:
        seeks.append(frame)
        original(self, frame, update_image)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", counting)
    data = big_canvas_gif(frames=10_000, width=600, height=400)
    picture = images.load(data)
    assert picture.frames == images.FRAME_COUNT_LIMIT
    assert picture.original_size == (600, 400)
    assert max(seeks) <= 1, f"{len(seeks)} seeks, up to frame {max(seeks)}"
    assert images.load(big_canvas_gif(frames=7, width=60, height=40)).frames == 7


def test_palette_with_transparency_composites_on_white_as_before() -> None:
    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).quantize(16)
    img.info["transparency"] = 3
    buf_png = png_bytes(img)
    expected = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)),
                                     Image.open(io.BytesIO(buf_png)).convert("RGBA"))
    got = images.load(buf_png).rgb
    assert np.array_equal(got, np.asarray(expected.convert("RGB")))
