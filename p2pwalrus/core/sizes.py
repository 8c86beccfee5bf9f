"""Byte counts as people write them: ``1000000``, ``64K``, ``10M``, ``2GiB``, ``1.5 GB``
(K, M, G, T are powers of 1024, with or without ``i`` and ``B``). One parser for the CLI and
for netlab's scenario files."""

from __future__ import annotations

import re

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?\s*")


def parse_size(text: str | int) -> int:
    """The byte count ``text`` names; ValueError if it names none."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"bad size {text!r}: a size is not negative")
        return text
    m = _SIZE.fullmatch(str(text).upper())
    if not m:
        raise ValueError(f"bad size {text!r}: use a number with an optional K, M, G or T suffix (e.g. 64K, 10M, 2GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])
