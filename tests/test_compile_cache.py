"""The compile cache is set by an explicit call where sampling starts, never by an import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, os, sys
import qialign.models, qialign.inference, qialign.alignment, qialign.cli  # imports change nothing
before = os.environ.get("PYTENSOR_FLAGS")
from qialign.inference.compile_cache import configure_compile
configure_compile()
configure_compile()  # once per process: the flags are not appended twice
import pytensor
print(json.dumps({"before": before, "flags": os.environ["PYTENSOR_FLAGS"],
                  "numba": os.environ["NUMBA_CACHE_DIR"], "compiledir": str(pytensor.config.base_compiledir),
                  "fastmath": bool(pytensor.config.numba__fastmath)}))
"""


def _probe(env_extra: dict, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env.update(env_extra)
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_configure_compile_points_pytensor_and_numba_at_the_cache_dir(tmp_path):
    cache = tmp_path / "cache"
    out = _probe({"QIALIGN_CACHE_DIR": str(cache)}, tmp_path)
    assert out["before"] is None
    assert out["flags"] == f"base_compiledir={cache / 'pytensor'},numba__fastmath=False"
    assert out["numba"] == str(cache / "numba")
    assert out["compiledir"] == str(cache / "pytensor")
    assert out["fastmath"] is False


def test_a_compile_dir_the_user_named_is_kept_and_fastmath_still_off(tmp_path):
    mine = tmp_path / "mine"
    out = _probe({"PYTENSOR_FLAGS": f"base_compiledir={mine},numba__fastmath=True"}, tmp_path)
    assert out["flags"] == f"base_compiledir={mine},numba__fastmath=True,numba__fastmath=False"
    assert out["compiledir"] == str(mine)
    assert out["fastmath"] is False
    assert out["numba"] == str(tmp_path / ".cache" / "numba")  # default: ./.cache
