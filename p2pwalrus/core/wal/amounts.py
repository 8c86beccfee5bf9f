"""WAL amounts as integers of FROST (1 WAL = 10^9 FROST), as Walrus counts them (pure).

Never a float: "1.5WAL" is parsed digit by digit, so 0.1 WAL is exactly 100_000_000 FROST.
Every amount fits in an unsigned 64-bit integer (Walrus's `u64` balances).
"""

from __future__ import annotations

import re
from ...errors import AmountError  # noqa: F401  (defined in errors.py; importable from here)

FROST_PER_WAL = 10**9
MAX_AMOUNT = (1 << 64) - 1

_AMOUNT = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?\s*(?P<unit>wal|frost)?", re.IGNORECASE)


def parse_amount(text: str | int) -> int:
    """FROST in "1.5WAL", "1.5 WAL", "300FROST" or a plain integer (FROST, the exact unit).

    A fraction needs the WAL suffix (a bare "1.5" is ambiguous) and at most 9 decimals."""
    if isinstance(text, bool):
        raise AmountError("an amount is a number of FROST or WAL, not a boolean")
    if isinstance(text, int):
        value = text
    else:
        m = _AMOUNT.fullmatch(text.strip().replace("_", ""))
        if m is None:
            raise AmountError(f"bad amount {text!r}: use a whole number of FROST, or WAL with a suffix, "
                              "e.g. 300FROST or 1.5WAL")
        unit = (m["unit"] or "frost").lower()
        frac = m["frac"] or ""
        if frac and unit != "wal":
            raise AmountError(f"bad amount {text!r}: FROST is the smallest unit; a fraction needs the WAL suffix")
        if len(frac) > 9:
            raise AmountError(f"bad amount {text!r}: WAL has 9 decimals (1 WAL = 10^9 FROST)")
        scale = FROST_PER_WAL if unit == "wal" else 1
        value = int(m["int"]) * scale + (int(frac.ljust(9, "0")) if frac else 0)
    if not 0 <= value <= MAX_AMOUNT:
        raise AmountError(f"amount {text!r} is out of range (0 to {MAX_AMOUNT} FROST)")
    return value


def format_amount(frost: int) -> str:
    """'1.5 WAL', '0.000000001 WAL', '-2 WAL': exact, no trailing zeros."""
    sign = "-" if frost < 0 else ""
    whole, frac = divmod(abs(frost), FROST_PER_WAL)
    text = f"{whole}.{frac:09d}".rstrip("0").rstrip(".") if frac else str(whole)
    return f"{sign}{text} WAL"
