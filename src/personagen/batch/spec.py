"""The batch file: a list of run specs, or personas x data expanded to one run per pair.

    batch_id: homes-2025            # optional; the file's name by default
    runs:                           # either: spec files and/or inline specs
      - specs/maya.yaml
      - {persona: "A nurse buying her first flat", data: docs/}

    batch_id: homes-2025
    personas: personas.yaml         # or: a list of personas (mappings or descriptions)
    data: [docs/costs.md, docs/deposits.md, [docs/a.md, docs/b.md]]
    goal: {name: qa, params: {num_questions: 5}}   # shared by every pair, like
    constraints: ...                # constraints, run, llm and hooks
    llm: {provider: openai}

Each run gets a stable id made of the batch id, a readable slug and a digest of its resolved
spec, so running the same file again maps every item to the run it had (and resumes it).
Relative paths resolve from the batch file's directory. Errors name the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from personagen.errors import SpecError
from personagen.specfile import format_validation_error, load_spec, parse_spec, read_mapping_file
from personagen.state.spec import (
    Constraints,
    DataSource,
    Goal,
    HookPoint,
    LLMSettings,
    Persona,
    RunOptions,
    RunSpec,
)

BATCH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SHARED_KEYS = ("goal", "constraints", "run", "llm", "hooks")


class BatchSpec(BaseModel):
    """A batch file: `runs`, or `personas` x `data` with shared settings."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    batch_id: str | None = Field(
        None,
        pattern=BATCH_ID_PATTERN,
        description="Names the batch and prefixes its run ids (the file's name by default).",
    )
    runs: list[str | dict[str, Any]] | None = Field(
        None, min_length=1, description="Run spec files (relative to the batch file) or specs."
    )
    personas: list[Persona] | None = Field(
        None,
        min_length=1,
        description="Personas (mappings or bare descriptions), or a YAML/JSON file listing them.",
    )
    data: list[list[DataSource]] | None = Field(
        None,
        min_length=1,
        description="Data items; each is a source or a list of sources read by one run.",
    )
    goal: Goal | None = Field(None, description="Goal shared by every persona x data run.")
    constraints: Constraints | None = Field(None, description="Shared output constraints.")
    run: RunOptions | None = Field(None, description="Shared run options.")
    llm: LLMSettings | None = Field(None, description="Shared model settings.")
    hooks: dict[HookPoint, list[str]] | None = Field(None, description="Shared user hooks.")

    @field_validator("personas", mode="before")
    @classmethod
    def _personas_file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        base = Path((info.context or {}).get("base_dir") or ".")
        path = base / value
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"personas file {str(path)!r} cannot be read: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ValueError(f"personas file {str(path)!r} is not valid YAML: {exc}") from exc
        if isinstance(loaded, dict) and "personas" in loaded:
            loaded = loaded["personas"]
        if not isinstance(loaded, list):
            raise ValueError(f"personas file {str(path)!r} must hold a list of personas")
        return loaded

    @field_validator("data", mode="before")
    @classmethod
    def _data_groups(cls, value: Any) -> Any:
        if isinstance(value, str | dict):
            value = [value]
        if isinstance(value, list):
            return [item if isinstance(item, list) else [item] for item in value]
        return value

    @field_validator("hooks", mode="before")
    @classmethod
    def _hook_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> BatchSpec:
        matrix = self.personas is not None or self.data is not None
        if self.runs is not None and matrix:
            raise ValueError("give either 'runs' or 'personas' and 'data', not both")
        if self.runs is None and not matrix:
            raise ValueError("give 'runs' (a list of specs) or 'personas' and 'data'")
        if matrix and (self.personas is None or self.data is None):
            missing = "data" if self.data is None else "personas"
            raise ValueError(f"'{missing}' is missing: 'personas' and 'data' go together")
        if self.runs is not None:
            shared = [key for key in _SHARED_KEYS if getattr(self, key) is not None]
            if shared:
                raise ValueError(
                    f"{', '.join(shared)}: shared settings apply to personas x data only; "
                    "with 'runs', put them in each run's spec"
                )
        return self


@dataclass(frozen=True)
class BatchItem:
    """One run of a batch: its stable id, where it came from, and its spec."""

    run_id: str
    label: str
    spec: RunSpec


@dataclass(frozen=True)
class BatchPlan:
    """A validated batch: its id, its runs, and the file it was read from."""

    batch_id: str
    items: list[BatchItem]
    source: str | None = None


def spec_digest(spec: RunSpec) -> str:
    """A digest of what a spec asks for (defaults and `base_dir` left out, so it is stable)."""
    payload = spec.model_dump(mode="json", exclude_defaults=True, exclude={"base_dir"})
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _slug(text: str, limit: int = 24) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "run"


def run_id_for(batch_id: str, spec: RunSpec) -> str:
    """The stable run id of `spec` in batch `batch_id`."""
    return f"{batch_id}-{_slug(spec.persona.name)}-{spec_digest(spec)[:10]}"


def default_batch_id(path: str | Path) -> str:
    """A batch id from a file name: `batches/Homes 2025.yaml` -> `Homes-2025`."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-._")
    return stem[:64] or "batch"


def _data_label(group: list[DataSource]) -> str:
    return ", ".join(source.reference for source in group)


def _expand_runs(batch: BatchSpec, origin: str, base_dir: Path) -> list[tuple[str, RunSpec]]:
    out: list[tuple[str, RunSpec]] = []
    for index, entry in enumerate(batch.runs or []):
        where = f"{origin}: runs.{index}"
        if isinstance(entry, str):
            try:
                spec = load_spec(base_dir / entry)
            except SpecError as exc:
                raise SpecError(f"{where}: {exc}") from exc
            out.append((f"runs.{index} ({entry})", spec))
        else:
            spec = parse_spec(entry, origin=where, base_dir=base_dir)
            out.append((f"runs.{index} ({spec.persona.name})", spec))
    return out


def _expand_matrix(batch: BatchSpec, origin: str, base_dir: Path) -> list[tuple[str, RunSpec]]:
    shared: dict[str, Any] = {
        key: getattr(batch, key) for key in _SHARED_KEYS if getattr(batch, key) is not None
    }
    out: list[tuple[str, RunSpec]] = []
    for p, persona in enumerate(batch.personas or []):
        for d, group in enumerate(batch.data or []):
            fields = {**shared, "persona": persona, "data": group, "base_dir": str(base_dir)}
            try:
                spec = RunSpec.model_validate(fields)
            except ValidationError as exc:  # pragma: no cover - the parts are validated
                raise SpecError(
                    format_validation_error(exc, f"{origin}: personas.{p} x data.{d}")
                ) from exc
            out.append((f"{persona.name} x {_data_label(group)}", spec))
    return out


def parse_batch(
    data: Any,
    *,
    origin: str = "<batch>",
    base_dir: str | Path | None = None,
    default_id: str = "batch",
) -> BatchPlan:
    """Validate a parsed batch mapping and expand it into runs with stable ids.

    Args:
        data: the parsed batch file.
        origin: names the batch in error messages (usually its path).
        base_dir: where relative spec, persona-file and data paths resolve from.
        default_id: the batch id when the mapping gives none.

    Raises:
        SpecError: naming the file and the key of every problem.
    """
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping with 'runs', or 'personas' and 'data'")
    base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
    try:
        batch = BatchSpec.model_validate(data, context={"base_dir": str(base)})
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, origin)) from exc
    batch_id = batch.batch_id or default_id
    if not re.match(BATCH_ID_PATTERN, batch_id):
        raise SpecError(f"{origin}: batch_id: {batch_id!r} is not a valid batch id")
    pairs = (
        _expand_runs(batch, origin, base)
        if batch.runs is not None
        else _expand_matrix(batch, origin, base)
    )
    items: list[BatchItem] = []
    seen: dict[str, str] = {}
    for label, spec in pairs:
        run_id = run_id_for(batch_id, spec)
        if run_id in seen:
            raise SpecError(
                f"{origin}: {label} asks for exactly the same run as {seen[run_id]}; "
                "remove one of them"
            )
        seen[run_id] = label
        items.append(BatchItem(run_id=run_id, label=label, spec=spec))
    return BatchPlan(batch_id=batch_id, items=items, source=origin)


def load_batch(path: str | Path) -> BatchPlan:
    """Read a batch file (YAML or JSON) and expand it; relative paths resolve from its folder.

    Raises:
        SpecError: the file is missing, unreadable, not YAML/JSON, or invalid (the message
            names the file and the key).
    """
    path = Path(path)
    data = read_mapping_file(path, what="batch file")
    return parse_batch(
        data, origin=str(path), base_dir=path.resolve().parent, default_id=default_batch_id(path)
    )
