"""Pieces every page shares: frames as inline PNGs, one page shell, atomic writes.

Pages are self-contained (images inline as data URIs, style and script in the page), so one
file can be mailed, attached to an issue or opened from a CI artefact without its folder.
"""

from __future__ import annotations

import base64
import html
import os
import secrets
from pathlib import Path

import cv2
import numpy as np

esc = html.escape

BASE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: left; }
tr:nth-child(even) { background: #f4f4f4; }
img.frame { image-rendering: pixelated; border: 1px solid #ccc; }
.success { color: #176a2b; } .failure { color: #a3241b; }
code { background: #f0f0f0; padding: 0 3px; }
"""


def png_data_uri(frame: np.ndarray, scale: int = 1) -> str:
    """An RGB frame as a ``data:image/png`` URI, upscaled ``scale`` times (nearest)."""
    if scale > 1:
        frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 9])  # a third of the default's size
    if not ok:
        raise ValueError(f"cannot encode a frame of shape {frame.shape} as PNG")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def page(title: str, body: str, style: str = "", script: str = "") -> str:
    """A whole HTML document: ``body`` is HTML already escaped where it needs to be."""
    script_tag = f"<script>\n{script}\n</script>\n" if script else ""
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{BASE_STYLE}{style}</style>\n</head>\n"
            f"<body>\n{body}\n{script_tag}</body>\n</html>\n")


def write_atomic(path: Path | str, data: str | bytes) -> Path:
    """Write ``path`` whole or not at all: a failure leaves an older file as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
