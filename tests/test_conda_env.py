"""envs/l2o.yaml installs this package from where Snakemake puts its copy.

No conda can be installed here (conda packages come from channels this machine cannot reach), so a
stand-in `conda` on PATH answers Snakemake's checks and, for `conda env create --file <copy>`, does
what conda's pip installer does with the env file's pip list: writes it to a requirements file in the
copy's folder and runs pip from that folder (here `pip install --dry-run`, offline). Snakemake itself
decides where the copy goes, so the test proves the path in the env file against Snakemake's real
copy location."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import shutil
import yaml

from workflow_helpers import REPO, copy_workflow

SHIM = textwrap.dedent('''\
    #!{python}
    """A stand-in for conda: Snakemake's checks, and env create's pip step run as conda runs it."""
    import json, os, subprocess, sys, tempfile
    import yaml
    args = sys.argv[1:]
    log = os.environ["L2O_CONDA_SHIM_LOG"]
    if args == ["info", "--json"]:
        print(json.dumps({{"conda_prefix": os.environ["L2O_CONDA_SHIM_PREFIX"], "platform": "linux-64"}}))
    elif args == ["--version"]:
        print("conda 24.9.2")
    elif args[:3] == ["config", "--get", "channel_priority"]:
        print(json.dumps({{"get": {{"channel_priority": "strict"}}, "rc_path": None}}))
    elif args[:1] == ["clean"]:
        pass  # Snakemake cleans the package cache after creating an env
    elif args[:2] == ["env", "create"]:
        env_file = args[args.index("--file") + 1].strip('"')
        prefix = args[args.index("--prefix") + 1].strip('"')
        spec = yaml.safe_load(open(env_file))
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        workdir = os.path.dirname(os.path.abspath(env_file))  # conda: pip runs from the env file's folder
        req = tempfile.NamedTemporaryFile("w", prefix="condaenv.", suffix=".requirements.txt", dir=workdir, delete=False)
        req.write("\\n".join(pip)); req.close()
        report = os.path.join(os.path.dirname(log), "pip-report.json")
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                               "--no-build-isolation", "--report", report, "-r", req.name],
                              cwd=workdir, capture_output=True, text=True)
        os.unlink(req.name)
        json.dump({{"env_file": env_file, "cwd": workdir, "pip": pip, "returncode": proc.returncode,
                   "output": proc.stdout[-3000:] + proc.stderr[-3000:]}}, open(log, "w"))
        os.makedirs(os.path.join(prefix, "conda-meta"), exist_ok=True)
        sys.exit(proc.returncode)
    else:
        sys.exit("conda stand-in: unexpected call " + " ".join(args))
''')


def test_snakemake_conda_env_installs_this_package(tmp_path):
    work = copy_workflow(tmp_path / "repo")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, work / name)
    shim_dir, log = tmp_path / "shim", tmp_path / "shim-log" / "create.json"
    shim_dir.mkdir()
    log.parent.mkdir()
    (shim_dir / "conda").write_text(SHIM.format(python=sys.executable))
    (shim_dir / "conda").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim_dir}{os.pathsep}{os.environ['PATH']}", "L2O_CONDA_SHIM_LOG": str(log),
           "L2O_CONDA_SHIM_PREFIX": str(tmp_path / "base"), "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--software-deployment-method", "conda",
                           "--conda-create-envs-only"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert log.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(log.read_text())
    # Snakemake's copy of the env file sits in <working dir>/.snakemake/conda/
    assert Path(record["cwd"]) == work / ".snakemake" / "conda", record
    assert record["returncode"] == 0, record["output"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((log.parent / "pip-report.json").read_text())
    (l2o,) = [item for item in report["install"] if item["metadata"]["name"] == "l2o"]
    assert l2o["download_info"]["url"] == work.as_uri()  # the package, from the working directory
    assert l2o["download_info"].get("dir_info", {}).get("editable") is True


def test_the_old_path_pointed_into_dot_snakemake():
    """`-e ../` (the path before this fix) resolves, from the copy's folder, to .snakemake/: no package there."""
    spec = yaml.safe_load((REPO / "envs/l2o.yaml").read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
    (line,) = [p for p in pip if p.startswith("-e ")]
    copy_folder = Path("/work/dir/.snakemake/conda")
    assert os.path.normpath(copy_folder / line.split()[1]) == "/work/dir"
    assert os.path.normpath(copy_folder / "../") == "/work/dir/.snakemake"
