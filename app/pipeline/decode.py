"""Bytes → 8-bit RGB numpy array (H, W, 3), or a typed InputError saying why not.

Order matters: the byte limit is checked before anything is parsed and the
pixel limit right after the header is read, so neither a huge upload nor a
decompression bomb (tiny file, giant dimensions) ever gets decoded.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.pipeline.errors import BadRequest, TooLarge, Undecodable, UnsupportedType

# The pixel limit is ours (max_pixels, VISAGE_MAX_PIXELS), checked on the header exactly where Pillow
# checks its own (89.5 MP): with Pillow's in place, a larger image was refused in Pillow's words and
# with Pillow's number, and a VISAGE_MAX_PIXELS above it could not take effect.
Image.MAX_IMAGE_PIXELS = None

# Pillow format names we accept. GIF / animated WebP: the first frame is used.
FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF", "TIFF": "TIFF", "MPO": "JPEG"}
SUPPORTED = "JPEG, PNG, WebP, BMP, GIF, TIFF"
# Leading bytes of the accepted formats (WebP is RIFF....WEBP; BMP's "BM" is too short to be telling).
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\0", b"MM\0*")


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> np.ndarray:
    if not data:
        raise BadRequest("The uploaded file is empty.", code="empty_file")
    if len(data) > max_bytes:
        raise TooLarge(f"The file is {size_text(len(data), max_bytes)}.", code="file_too_large")
    image = _open(data, max_pixels)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)   # phones store rotation as a tag, not in the pixels
        return to_rgb8(image)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        raise Undecodable(f"The {FORMATS[image.format]} image could not be decoded (truncated or corrupt file: {e}).") from e


def size_text(size: int, limit: int) -> str:
    """"10.6 MB; the limit is 10.5 MB", in bytes where the megabytes would read the same."""
    if f"{size / 1e6:.1f}" == f"{limit / 1e6:.1f}":
        return f"{size:,} bytes; the limit is {limit:,} bytes"
    return f"{size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB"


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header only: identify the format and check the pixel count."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLarge(f"The image has too many pixels (decompression bomb?): {e}", code="too_many_pixels") from e
    except UnidentifiedImageError as e:
        # Pillow says "unidentified" also when a known format's header is corrupt (e.g. a bad PNG CRC).
        if data.startswith(SIGNATURES) or (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
            raise Undecodable("The image header is corrupt (a known image format, but unreadable).") from e
        raise UnsupportedType(f"The file is not an image we can read. Supported: {SUPPORTED}.") from e
    except Exception as e:  # Pillow plugins raise assorted errors on corrupt headers
        raise Undecodable(f"The image header could not be read (corrupt file: {e}).") from e
    if image.format not in FORMATS:
        raise UnsupportedType(f"{image.format} images are not supported. Supported: {SUPPORTED}.")
    width, height = image.size
    if width * height > max_pixels:
        raise TooLarge(f"The image is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
                       f"the limit is {max_pixels / 1e6:.1f} megapixels.", code="too_many_pixels")
    if width < 1 or height < 1:
        raise Undecodable("The image has no pixels.")
    return image


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode → uint8 RGB (H, W, 3). Transparent areas become white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit gray: Pillow's convert() clips at 255 instead of scaling.
        gray = np.asarray(image, dtype=np.float64)
        gray = np.clip(gray / 257.0, 0, 255).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        gray = np.asarray(image, dtype=np.float64)
        scale = 255.0 if gray.max(initial=0) <= 1.0 else 1.0
        gray = np.clip(gray * scale, 0, 255).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
