"""Every data file of the package ships in a non-editable install (wheel, container image).

An editable install reads files from the source tree, so a file missing from
`[tool.setuptools.package-data]` only fails in a real install: `prompts/shared.yaml` did,
in the container image, on every run.
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "personagen"


def test_every_data_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["personagen"]
    data_files = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    assert data_files  # the prompts at least
    missing = [f for f in data_files if not any(fnmatch(f, pattern) for pattern in patterns)]
    assert not missing, f"not in package-data: {missing}"
