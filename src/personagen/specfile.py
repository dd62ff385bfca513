"""Read a run spec from YAML or JSON, with errors that name the file and the key path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from personagen.errors import SpecError
from personagen.state.spec import RunSpec


def format_validation_error(exc: ValidationError, origin: str) -> str:
    """One line per problem: `origin: key.path: message`."""
    lines = []
    for error in exc.errors():
        where = (
            ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
            or "(top level)"
        )
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{origin}: {where}: {message}")
    return "\n".join(dict.fromkeys(lines))


def parse_spec(data: Any, *, origin: str = "<spec>", base_dir: str | Path | None = None) -> RunSpec:
    """Validate an already parsed mapping into a `RunSpec`."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{origin}: expected a mapping with persona, goal, data, ... at the top level"
        )
    if base_dir is not None and "base_dir" not in data:
        data = {**data, "base_dir": str(base_dir)}
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, origin)) from exc


def read_mapping_file(path: str | Path, *, what: str = "spec file") -> Any:
    """Read a YAML or JSON file; errors name the file and, for syntax errors, the position.

    Raises:
        SpecError: the file is missing, unreadable, not valid YAML/JSON, or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{what} {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{what} {str(path)!r} cannot be read: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{path}: invalid YAML{where}: {problem}") from exc
    if data is None:
        raise SpecError(f"{path}: the file is empty")
    return data


def load_spec(path: str | Path) -> RunSpec:
    """Load and validate a spec file; relative data paths resolve from the file's directory."""
    path = Path(path)
    data = read_mapping_file(path)
    return parse_spec(data, origin=str(path), base_dir=path.resolve().parent)
