"""Generated images: content hash, PSNR against the reference clock, PNG files with metadata."""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sweepd import atomic


def pixel_sha256(img: np.ndarray) -> str:
    """Hash of the pixels (shape + RGB bytes), so equal pictures hash equal whatever the PNG metadata."""
    h = hashlib.sha256(f"{img.shape}".encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def psnr(img: np.ndarray, ref: np.ndarray) -> float:
    if img.shape != ref.shape:
        return float("nan")
    mse = float(np.mean((img.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def encode_png(img: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    meta = PngInfo()
    for k, v in (text or {}).items():
        meta.add_itxt(k, str(v))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", pnginfo=meta)
    return buf.getvalue()


def save_png(path: Path, img: np.ndarray, text: dict[str, str] | None = None) -> int:
    data = encode_png(img, text)
    atomic.write_bytes(path, data)
    return len(data)


def load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def image_name(point_label: str, trial: int, index: int, seed: int) -> str:
    return f"{point_label}_t{trial}_i{index:03d}_s{seed}.png"
