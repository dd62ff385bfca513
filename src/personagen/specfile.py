"""Read a run spec from YAML or JSON, with errors that name the file and the key path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from personagen.errors import SpecError
from personagen.state.spec import RunSpec


def _shown(value: Any) -> str:
    """A short, one-line rendering of an offending value."""
    text = repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= 80 else text[:77] + "..."


def format_validation_error(exc: ValidationError, origin: str) -> str:
    """One line naming each problem's key path and offending value: `origin: key.path: ...`.

    Several problems are joined with `; ` so the message stays one line.
    """
    problems = []
    for error in exc.errors():
        where = (
            ".".join(
                str(p)
                for p in error["loc"]
                if not str(p).startswith("function-") and str(p) != "[key]"
            )
            or "(top level)"
        )
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif isinstance(value, str | int | float | bool) or value is None:
            if not (isinstance(value, str) and value in message):  # say it once
                message = f"{message} (got {_shown(value)})"
        problems.append(f"{where}: {message}")
    return f"{origin}: " + "; ".join(dict.fromkeys(problems))


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


def check_runnable(spec: RunSpec) -> None:
    """Check what a run would fail on later, without a model call: plugins, model, endpoint.

    Imports every hook and plugin (constraint checkers; plugin metrics are imported when the
    goal is resolved), checks that a local model file exists and is a GGUF file, that the
    embedded provider is installed, and that an API key is set where one is needed.

    Raises:
        SpecError: naming the key path and the offending value.
    """
    from personagen.evaluators.plugins import CONSTRAINT_GROUP, load_callable

    def load(where: str, ref: str, group: str | None = None) -> None:
        try:
            load_callable(ref, group)
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - user code failing at import time
            raise SpecError(
                f"{where}: plugin {ref!r}: importing it failed: {type(exc).__name__}: {exc}"
            ) from exc

    for point, refs in spec.hooks.items():
        for index, ref in enumerate(refs):
            load(f"hooks.{point}.{index}" if len(refs) > 1 else f"hooks.{point}", ref)
    for list_name in ("filter_out", "check_for"):
        for index, rule in enumerate(getattr(spec.constraints, list_name)):
            if rule.plugin is not None:
                load(f"constraints.{list_name}.{index}.plugin", rule.plugin, CONSTRAINT_GROUP)
    _check_llm("llm", spec.llm)
    judge = getattr(spec.llm, "judge", None)
    if judge is not None:
        _check_llm("llm.judge", judge)


def _check_llm(where: str, llm: Any) -> None:
    import importlib.util
    import os

    if llm.model_path is not None:
        path = Path(llm.model_path).expanduser()
        if not path.is_file():
            raise SpecError(f"{where}.model_path: {llm.model_path!r} is not a file")
        try:
            with path.open("rb") as handle:
                magic = handle.read(4)
        except OSError as exc:
            raise SpecError(
                f"{where}.model_path: {llm.model_path!r} cannot be read: {exc}"
            ) from exc
        if magic != b"GGUF":
            raise SpecError(
                f"{where}.model_path: {llm.model_path!r} is not a GGUF model file "
                f"(it starts with {magic!r}, not b'GGUF')"
            )
    if llm.provider == "embedded" and importlib.util.find_spec("llama_cpp") is None:
        raise SpecError(
            f"{where}.provider: 'embedded' needs llama-cpp-python: "
            "pip install 'personagen[local]' (or use provider openai)"
        )
    if llm.provider == "openai" and llm.base_url is None and not os.environ.get(llm.api_key_env):
        raise SpecError(
            f"{where}.api_key_env: the environment variable {llm.api_key_env!r} is not set "
            "(needed for api.openai.com; give base_url for a local server)"
        )
