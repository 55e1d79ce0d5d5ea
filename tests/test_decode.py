"""decode_image: every accepted format and mode becomes uint8 RGB; every bad input a typed error."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.pipeline.decode import decode_image
from app.pipeline.errors import BadRequest, TooLarge, Undecodable, UnsupportedType
from conftest import encode

LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def decode(data: bytes, **limits) -> np.ndarray:
    return decode_image(data, **{**LIMITS, **limits})


@pytest.fixture(scope="module")
def picture(astronaut) -> np.ndarray:
    return astronaut[:120, :80]          # non-square, so rotations are visible in the shape


def assert_rgb8(image: np.ndarray, height: int, width: int):
    assert image.dtype == np.uint8 and image.shape == (height, width, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_formats(picture, fmt):
    assert_rgb8(decode(encode(picture, fmt)), 120, 80)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_keep_pixels(picture, fmt):
    assert np.array_equal(decode(encode(picture, fmt)), picture)


def test_gif_first_frame():
    red, blue = (np.full((10, 10, 3), c, np.uint8) for c in ((255, 0, 0), (0, 0, 255)))
    frames = [Image.fromarray(red), Image.fromarray(blue)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    image = decode(buffer.getvalue())
    assert image[5, 5, 0] > 200 and image[5, 5, 2] < 50


def blocks(colours, side: int = 16) -> np.ndarray:
    """Flat blocks of the given RGB colours side by side, so that lossy codecs keep each block's colour."""
    return np.concatenate([np.full((side, side, 3), c, np.uint8) for c in colours], axis=1)


# EXIF orientation → what the viewer must do to the stored pixels (np.rot90 turns counter-clockwise)
ORIENTATIONS = {3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1),
                2: lambda a: a[:, ::-1]}


@pytest.mark.parametrize("tag", sorted(ORIENTATIONS))
def test_exif_orientation_applied_in_the_right_direction(picture, tag):
    exif = Image.Exif()
    exif[0x0112] = tag                    # 6: "rotate 90° clockwise to display", 8: counter-clockwise
    image = decode(encode(picture, "PNG", exif=exif))
    assert np.array_equal(image, ORIENTATIONS[tag](picture))


def test_exif_orientation_of_a_jpeg(picture):
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode(encode(picture, "JPEG", exif=exif, quality=95))
    assert_rgb8(image, 80, 120)
    expected = np.rot90(decode(encode(picture, "JPEG", quality=95)), -1).astype(int)
    assert np.abs(image.astype(int) - expected).mean() < 2       # turned clockwise, not counter-clockwise
    assert np.abs(image.astype(int) - np.rot90(expected, 2)).mean() > 20


def test_grayscale_becomes_three_equal_channels(picture):
    gray = np.asarray(Image.fromarray(picture).convert("L"))
    image = decode(encode(gray, "PNG"))
    assert_rgb8(image, 120, 80)
    assert all(np.array_equal(image[..., c], gray) for c in range(3))


def test_rgba_transparent_becomes_white():
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    image = decode(encode(rgba, "PNG"))
    assert_rgb8(image, 8, 8)
    assert (image == 255).all()


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (200, 120, 40)]


def test_palette_png_keeps_its_colours():
    buffer = io.BytesIO()
    Image.fromarray(blocks(COLOURS)).convert("P", palette=Image.Palette.ADAPTIVE).save(buffer, format="PNG")
    assert np.array_equal(decode(buffer.getvalue()), blocks(COLOURS))      # 6 colours fit any palette exactly


def test_cmyk_jpeg_colours_come_back_as_rgb():
    buffer = io.BytesIO()
    Image.fromarray(blocks(COLOURS)).convert("CMYK").save(buffer, format="JPEG", quality=95)
    image = decode(buffer.getvalue())
    assert_rgb8(image, 16, 16 * len(COLOURS))
    centres = image[8, 8::16].astype(int)             # the middle of each block
    assert np.abs(centres - np.array(COLOURS)).max() <= 12, centres.tolist()


def test_16bit_grayscale_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    image = decode(buffer.getvalue())
    assert_rgb8(image, 16, 64)
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255 and 100 < image[8, 32, 0] < 155


def test_truncated(astronaut_jpeg):
    with pytest.raises(Undecodable) as e:
        decode(astronaut_jpeg[: len(astronaut_jpeg) // 3])
    assert e.value.status == 422


def test_truncated_png(picture):
    data = encode(picture, "PNG")
    with pytest.raises(Undecodable):
        decode(data[: len(data) // 2])


def test_not_an_image():
    with pytest.raises(UnsupportedType) as e:
        decode(b"%PDF-1.4 this is not an image" * 10)
    assert e.value.status == 415


def test_unsupported_image_format(picture):
    with pytest.raises(UnsupportedType, match="ICO"):
        decode(encode(picture[:64, :64], "ICO"))


def test_empty():
    with pytest.raises(BadRequest) as e:
        decode(b"")
    assert e.value.status == 400 and e.value.code == "empty_file"


def test_too_many_bytes(astronaut_jpeg):
    with pytest.raises(TooLarge) as e:
        decode(astronaut_jpeg, max_bytes=len(astronaut_jpeg) - 1)
    assert e.value.status == 413 and e.value.code == "file_too_large"
    assert f"{len(astronaut_jpeg):,} bytes; the limit is {len(astronaut_jpeg) - 1:,} bytes" in e.value.message
    with pytest.raises(TooLarge) as e:
        decode(b"\xff" * 10_600_000, max_bytes=10 * 1024 * 1024)     # megabytes that read differently
    assert "10.6 MB; the limit is 10.5 MB" in e.value.message


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims giant dimensions: a decompression bomb as seen by the decoder."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 60_000])  # above our limit; above Pillow's own bomb limit
def test_decompression_bomb(side):
    with pytest.raises(TooLarge) as e:
        decode(png_header_claiming(side, side))
    assert e.value.status == 413 and e.value.code == "too_many_pixels"
    assert f"{side}x{side}" in e.value.message and "the limit is 40.0 megapixels" in e.value.message  # ours


def test_pixel_limit_setting(picture):
    with pytest.raises(TooLarge):
        decode(encode(picture, "PNG"), max_pixels=120 * 80 - 1)
