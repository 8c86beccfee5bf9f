"""gc_tuning: long-running processes freeze what they loaded and collect young objects less often."""

from __future__ import annotations

import subprocess
import sys

from p2pwalrus import gc_tuning

SCRIPT = """
import gc, json, sys
from p2pwalrus import gc_tuning
before = gc.get_freeze_count()
done = gc_tuning.apply()
print(json.dumps([done, before, gc.get_freeze_count(), gc.get_threshold()[0]]))
"""


def run(env_value: str | None) -> list:
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k != "P2PWALRUS_GC_TUNING"}
    if env_value is not None:
        env["P2PWALRUS_GC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60, check=True)
    return json.loads(out.stdout)


def test_apply_freezes_what_is_loaded_and_raises_the_young_threshold():
    done, before, after, young = run(None)
    assert done and before == 0 and after > 1000
    assert young == gc_tuning.YOUNG_THRESHOLD


def test_turned_off_it_leaves_pythons_defaults():
    done, before, after, young = run("0")
    assert not done and after == 0 and young == 700
