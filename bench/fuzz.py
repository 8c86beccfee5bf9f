"""Fuzz every parser of peer and client bytes on demand (not a test run): 10,000 inputs each.

    .venv/bin/python bench/fuzz.py [--examples 10000] [-k PATTERN]

Runs tests/test_fuzz_parsers.py with P2PWALRUS_FUZZ_EXAMPLES set (hypothesis, random
seeds, no example database), then prints how many inputs each parser was given and how
long it took. Any input that makes a parser raise anything but the project's refusal
errors fails the run and is printed, shrunk, by hypothesis. CI runs the same file with
a few hundred inputs per parser.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10_000, help="inputs per parser (default 10000)")
    ap.add_argument("-k", default=None, help="only parsers whose test name matches (pytest -k)")
    args = ap.parse_args()
    os.environ["P2PWALRUS_FUZZ_EXAMPLES"] = str(args.examples)
    sys.path.insert(0, str(ROOT))
    import pytest

    t0 = time.perf_counter()
    argv = [str(ROOT / "tests" / "test_fuzz_parsers.py"), "-q", "-p", "no:cacheprovider", "-o", "addopts=",
            "--timeout", "0"]
    if args.k:
        argv += ["-k", args.k]
    code = pytest.main(argv)
    elapsed = time.perf_counter() - t0
    from tests import test_fuzz_parsers as fuzz

    print(f"\n{'parser':<22}{'inputs':>10}")
    for name, n in sorted(fuzz.calls.items()):
        print(f"{name:<22}{n:>10}")
    print(f"{'total':<22}{sum(fuzz.calls.values()):>10}   in {elapsed:.0f} s; "
          f"{'no uncaught exception' if code == 0 else 'FAILURES above'}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
