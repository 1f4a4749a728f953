"""Importing the package is cheap and side-effect free (no argv parsing, no heavy imports)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "mlflow", "matplotlib")
JUNK_ARGV = ["--foo", "-x", "bar", "--help", "--config=/nonexistent.yaml"]

PROBE = """
import json, sys
{imports}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps(heavy))
"""


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    # cwd: an empty folder, so nothing is written next to the sources and nothing local shadows
    return subprocess.run([sys.executable, "-c", code, *JUNK_ARGV], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)


def test_import_with_junk_argv_succeeds(tmp_path):
    proc = _run("import l2o; print(l2o.__version__)", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0.1.0"
    assert proc.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no file writes


@pytest.mark.parametrize("imports", [
    "import l2o",
    "import l2o, l2o.io, l2o.device, l2o.tracking",
])
def test_import_pulls_no_heavy_modules(tmp_path, imports):
    proc = _run(PROBE.format(imports=imports, heavy=set(HEAVY)), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
