"""The documentation: the site builds with warnings as errors, every module has an API page, and the
README stays a five-minute read whose links lead somewhere."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import l2o

REPO = Path(__file__).resolve().parents[1]


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, ("mkdocs is part of the docs extra (pip install -e .[docs]); "
                                  f"the build said:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    api = tmp_path / "site/api/denoising/index.html"
    assert api.is_file() and "tested_on_bsd68" not in api.read_text()
    assert "is_bsd68" in api.read_text()  # the docstrings are rendered


def test_every_module_has_an_api_page():
    documented = set()
    for page in (REPO / "docs/api").glob("*.md"):
        documented |= set(re.findall(r"^::: ([\w.]+)", page.read_text(), re.M))
    modules = {"l2o"} | {m.name for m in pkgutil.walk_packages(l2o.__path__, "l2o.") if not m.name.endswith("__main__")}
    missing = sorted(modules - documented)
    assert not missing, f"modules without an API page (add a '::: module' line to a page in docs/api/): {missing}"
    assert not documented - modules, f"API pages name modules that do not exist: {sorted(documented - modules)}"


def test_the_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "make run" in text and "make test" in text
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), f"README links to {target}, which does not exist"
