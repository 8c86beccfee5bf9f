"""A small line-plot PNG writer (numpy raster + zlib), so netlab needs no plotting library.

Two stacked panels over a shared time axis: shards stored per blob (with the n - f
and n - 2f thresholds dashed) and nodes alive; fault events as grey vertical lines.
Labels use a built-in 3x5 pixel font, scaled 2x.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from p2pwalrus.core.thresholds import max_faulty

_FONT = {  # 3x5 glyphs, rows top to bottom, '1' = ink
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    " ": "000000000000000", "/": "001001010100100", ":": "000010000010000", "=": "000111000111000",
    "(": "010100100100010", ")": "010001001001010", "+": "000010111010000", "%": "101001010100101",
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010", "P": "110101110100100",
    "Q": "010101101110011", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
    "Y": "101101010010010", "Z": "111001010100111", "_": "000000000000111",
}

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


class Canvas:
    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.px = np.full((height, width, 3), 255, dtype=np.uint8)

    def rect(self, x0, y0, x1, y1, color) -> None:
        x0, x1 = sorted((int(round(x0)), int(round(x1))))
        y0, y1 = sorted((int(round(y0)), int(round(y1))))
        self.px[max(y0, 0):min(y1 + 1, self.h), max(x0, 0):min(x1 + 1, self.w)] = color

    def line(self, x0, y0, x1, y1, color, width: int = 1, dash: int = 0) -> None:
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        xs = np.linspace(x0, x1, steps)
        ys = np.linspace(y0, y1, steps)
        if dash:
            keep = (np.arange(steps) // dash) % 2 == 0
            xs, ys = xs[keep], ys[keep]
        half = width // 2
        for dx in range(-half, width - half):
            for dy in range(-half, width - half):
                xi = np.clip(np.round(xs).astype(int) + dx, 0, self.w - 1)
                yi = np.clip(np.round(ys).astype(int) + dy, 0, self.h - 1)
                self.px[yi, xi] = color

    def text(self, x, y, s: str, color=(0, 0, 0), scale: int = 2) -> None:
        for ch in s.upper():
            glyph = _FONT.get(ch, _FONT[" "])
            for i, bit in enumerate(glyph):
                if bit == "1":
                    r, c = divmod(i, 3)
                    self.rect(x + c * scale, y + r * scale, x + c * scale + scale - 1, y + r * scale + scale - 1, color)
            x += 4 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + self.px[y].tobytes() for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _panel(cv: Canvas, box, t_max, y_max, series, title, hlines=(), events=(), step=False) -> None:
    x0, y0, x1, y1 = box
    cv.rect(x0, y0, x1, y0, (0, 0, 0))
    cv.rect(x0, y1, x1, y1, (0, 0, 0))
    cv.rect(x0, y0, x0, y1, (0, 0, 0))
    cv.rect(x1, y0, x1, y1, (0, 0, 0))
    cv.text(x0, y0 - 16, title)
    t_max = max(t_max, 1e-9)
    y_max = max(y_max, 1)

    def X(t):
        return x0 + (x1 - x0) * t / t_max

    def Y(v):
        return y1 - (y1 - y0) * v / (y_max * 1.08)

    for t, _label in events:
        cv.line(X(t), y0 + 1, X(t), y1 - 1, (200, 200, 200))
    for v, label, color in hlines:
        cv.line(x0 + 1, Y(v), x1 - 1, Y(v), color, dash=6)
        cv.text(x1 + 6, Y(v) - 5, label, color)
    for k in range(5):  # y ticks
        v = y_max * k / 4
        cv.text(x0 - 8 - 8 * len(f"{v:.3g}"), Y(v) - 5, f"{v:.3g}")
        cv.rect(x0 - 4, Y(v), x0, Y(v), (0, 0, 0))
    for (ts, vs, color, _name) in series:
        pts = [(X(t), Y(v)) for t, v in zip(ts, vs) if v is not None]
        for (ax, ay), (bx, by) in zip(pts, pts[1:]):
            if step:
                cv.line(ax, ay, bx, ay, color, width=2)
                cv.line(bx, ay, bx, by, color, width=2)
            else:
                cv.line(ax, ay, bx, by, color, width=2)


def plot_timeseries(samples: list[dict], events: list[tuple[float, str]], n_shards: int, blob_names: list[str],
                    width: int = 960, height: int = 620, title: str = "") -> bytes:
    """PNG bytes: shards stored per blob (top) and nodes alive (bottom) against time."""
    cv = Canvas(width, height)
    f = max_faulty(n_shards)
    ts = [s["t"] for s in samples]
    t_max = max(ts + [e[0] for e in events] + [1.0])
    left, right = 70, width - 90
    cv.text(left, 8, title[:100])
    series = [(ts, [s["shards"].get(b) for s in samples], PALETTE[i % len(PALETTE)], b)
              for i, b in enumerate(blob_names)]
    top = (left, 50, right, 320)
    _panel(cv, top, t_max, n_shards, series, "shards stored per blob",
           hlines=[(n_shards - f, "N-F", (200, 0, 0)), (n_shards - 2 * f, "N-2F", (120, 120, 120))], events=events)
    alive_max = max([s["alive"] for s in samples] + [1])
    bottom = (left, 370, right, 540)
    _panel(cv, bottom, t_max, alive_max, [(ts, [s["alive"] for s in samples], (0, 0, 0), "alive")],
           "nodes alive", events=events, step=True)
    for k in range(6):  # time ticks
        t = t_max * k / 5
        x = left + (right - left) * t / t_max
        cv.rect(x, bottom[3], x, bottom[3] + 4, (0, 0, 0))
        cv.text(x - 8, bottom[3] + 8, f"{t:.3g}")
    cv.text((left + right) // 2 - 40, bottom[3] + 26, "time (s)")
    # legend
    x = left
    for i, b in enumerate(blob_names[:8]):
        color = PALETTE[i % len(PALETTE)]
        cv.rect(x, height - 24, x + 14, height - 14, color)
        cv.text(x + 20, height - 25, b[:12], color)
        x += 20 + 8 * min(len(b), 12) + 20
    return cv.png()
