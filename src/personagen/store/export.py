"""Exports of a run's (or a whole batch's) Q/A pairs in the formats eval and training tools load.

    personagen.export("RUN_ID", format="ragas")            # -> out/RUN_ID/export/ragas/
    personagen.export("BATCH_ID", format="hf", out="ds")   # every run of the batch, merged

Formats: `ragas` (JSONL with Ragas' `SingleTurnSample` field names), `deepeval` (a JSON list
of DeepEval goldens), `hf` (`datasets.Dataset.save_to_disk`), `csv`, `parquet`, and `chat`
(OpenAI chat fine-tuning lines: `messages` only). Every export writes three sets side by side,
so that only pairs that passed every judge are ever mixed with training or reference data:

- `accepted`: pairs accepted by the run;
- `unanswerable`: questions the data does not answer (custom questions, answer ""), kept for
  the record, never as references;
- `unverified`: pairs a judge that failed its own self-test would have accepted (the bundle's
  `unverified.jsonl`, when there is one).

One row shape serves the tabular formats (the Ragas names, plus `persona_name`, `run_id`,
`pair_id`, the sources, and one `score_<metric>` column per metric), with an explicit Arrow
schema so empty sets and merged batches keep the same columns.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from personagen.errors import PersonaGenError

ExportFormat = Literal["ragas", "deepeval", "hf", "csv", "parquet", "chat"]
"""ragas | deepeval | hf | csv | parquet | chat."""
FORMATS: tuple[str, ...] = get_args(ExportFormat)
SETS = ("accepted", "unanswerable", "unverified")
"""The sets every export writes, each to a file (or, for hf, a folder) of its own."""
MANIFEST_NAME = "export.json"
DEFAULT_SYSTEM_PROMPT = "Answer the user's question using only the context below."
"""The chat format's system message (followed by the pair's retrieved contexts)."""

_EXTENSIONS = {
    "ragas": ".jsonl",
    "deepeval": ".json",
    "hf": "",
    "csv": ".csv",
    "parquet": ".parquet",
    "chat": ".jsonl",
}
# Bundle and batch layout (personagen/store/bundle.py, personagen/batch/summary.py); not
# imported from the batch package so that an export needs nothing a run needs.
_QA = "qa.jsonl"
_UNVERIFIED = "unverified.jsonl"
_BATCH_MANIFEST = "manifest.json"
_BATCH_SUMMARY = "batch.json"
_BATCH_RUNS = "runs"


class ExportError(PersonaGenError):
    """A run or batch cannot be exported; the message names the id, folder or file."""


@dataclass
class ExportResult:
    """What an export wrote."""

    format: str
    out: Path
    """The folder holding the exported sets and `export.json`."""
    files: dict[str, Path]
    """Set name (`accepted`, `unanswerable`, `unverified`) -> file or folder written."""
    counts: dict[str, int]
    """Rows per set."""
    runs: list[str]
    """The runs exported, in order."""
    batch_id: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    """Runs of a batch left out, with the reason (no bundle yet, not a Q/A goal)."""


@dataclass
class _Bundle:
    run_id: str
    directory: Path


# --- finding the runs -------------------------------------------------------------------------


def _resolve(ref: str | Path, runs_dir: Path) -> tuple[str | None, Path, list[_Bundle]]:
    """(batch id or None, the folder exported from, its bundles) for a run or batch reference."""
    given = Path(ref)
    for candidate in (given, runs_dir / str(ref)):
        if (candidate / _BATCH_MANIFEST).is_file():
            return _batch_bundles(candidate)
        if candidate.is_dir() and (candidate / "metadata.json").is_file():
            return None, candidate, [_Bundle(_run_id_of(candidate), candidate)]
    # A run of a batch, by its id alone.
    found = (
        sorted(runs_dir.glob(f"*/{_BATCH_RUNS}/{given.name}/metadata.json")) if given.name else []
    )
    if len(found) == 1:
        bundle = found[0].parent
        return None, bundle, [_Bundle(_run_id_of(bundle), bundle)]
    if len(found) > 1:
        raise ExportError(
            f"run id {str(ref)!r} is in several batches: "
            + ", ".join(str(p.parent) for p in found)
            + " (give the run's folder)"
        )
    raise ExportError(
        f"no run or batch {str(ref)!r}: none of {str(runs_dir / str(ref))!r}, {str(given)!r} "
        f"or {str(runs_dir / '*' / _BATCH_RUNS / given.name)!r} holds a bundle (metadata.json) "
        f"or a batch (manifest.json); give the folder, or where runs are (--from)"
    )


def _run_id_of(bundle: Path) -> str:
    metadata = _read_json(bundle / "metadata.json")
    run_id = metadata.get("run_id") if isinstance(metadata, dict) else None
    return str(run_id or bundle.name)


def _batch_bundles(batch_dir: Path) -> tuple[str, Path, list[_Bundle]]:
    manifest = _read_json(batch_dir / _BATCH_MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
        raise ExportError(f"{batch_dir / _BATCH_MANIFEST}: not a batch manifest (no 'runs' list)")
    # batch.json knows where each finished run's bundle went; without it, runs/<run_id>/.
    where: dict[str, Path] = {}
    if (batch_dir / _BATCH_SUMMARY).is_file():
        summary = _read_json(batch_dir / _BATCH_SUMMARY)
        for record in summary.get("runs", []) if isinstance(summary, dict) else []:
            if isinstance(record, dict) and record.get("id") and record.get("bundle_dir"):
                where[str(record["id"])] = Path(record["bundle_dir"])
    bundles = []
    for index, run in enumerate(manifest["runs"]):
        run_id = run.get("id") if isinstance(run, dict) else None
        if not run_id:
            raise ExportError(f"{batch_dir / _BATCH_MANIFEST}: runs.{index} has no id")
        directory = where.get(str(run_id), batch_dir / _BATCH_RUNS / str(run_id))
        if not directory.is_absolute():
            directory = batch_dir / directory
        bundles.append(_Bundle(str(run_id), directory))
    return str(manifest.get("batch_id") or batch_dir.name), batch_dir, bundles


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ExportError(f"{path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} cannot be read: {exc}") from exc


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ExportError(f"{path} cannot be read: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ExportError(f"{path}:{number}: not JSON ({exc})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise ExportError(f"{path}:{number}: not a Q/A row (no 'question')")
        rows.append(row)
    return rows


# --- rows ---------------------------------------------------------------------------------------


def _texts(items: Any) -> list[str]:
    return [str(i.get("text") or "") for i in items or [] if isinstance(i, dict) and i.get("text")]


def _row(
    pair: dict[str, Any], *, run_id: str, persona: str, batch_id: str | None
) -> dict[str, Any]:
    """The common row: Ragas' field names plus where the pair comes from."""
    contexts = [c for c in pair.get("contexts") or [] if isinstance(c, dict)]
    spans = [s for s in pair.get("spans") or [] if isinstance(s, dict)]
    retrieved = _texts(contexts)
    # The reference contexts are the exact source text the answer rests on; an answer with no
    # matched span rests on what the answering model was given.
    reference = _texts(spans) or retrieved
    reference_ids = (
        # Named like chunk ids (`<doc id[:12]>:<start>-<end>`).
        [
            f"{str(s.get('doc_id'))[:12]}:{s.get('start')}-{s.get('end')}"
            for s in spans
            if s.get("text")
        ]
        if _texts(spans)
        else [str(c.get("chunk_id")) for c in contexts if c.get("text")]
    )
    sources: list[str] = []
    for item in [*spans, *contexts]:
        source = item.get("source")
        if source and source not in sources:
            sources.append(str(source))
    row: dict[str, Any] = {
        "user_input": pair["question"],
        "reference": str(pair.get("answer") or ""),
        "reference_contexts": reference,
        "reference_context_ids": reference_ids,
        "retrieved_contexts": retrieved,
        "retrieved_context_ids": [str(c.get("chunk_id")) for c in contexts if c.get("text")],
        "persona_name": persona,
        "run_id": run_id,
        "pair_id": str(pair.get("id") or ""),
        "origin": str(pair.get("origin") or ""),
        "iteration": int(pair.get("iteration") or 0),
        "sources": sources,
    }
    if batch_id is not None:
        row["batch_id"] = batch_id
    for metric, value in (pair.get("scores") or {}).items():
        if isinstance(value, int | float):
            row[f"score_{metric}"] = float(value)
    return row


def _set_of(pair: dict[str, Any], default: str) -> str | None:
    """Which set a bundle row belongs to (None: not exported)."""
    status = pair.get("status")
    if not str(pair.get("answer") or "").strip() or pair.get("answerable") is False:
        return "unanswerable"
    if status == "unanswerable":
        return "unanswerable"
    if status == "unverified" or default == "unverified":
        return "unverified"
    return "accepted" if status in ("accepted", None) else None


def collect_rows(
    ref: str | Path, *, runs_dir: str | Path = "out"
) -> tuple[dict[str, list[dict[str, Any]]], str | None, Path, list[str], dict[str, str]]:
    """Rows per set for a run or batch, plus (batch id, source folder, runs, skipped runs).

    Args:
        ref: a run id, a batch id, or the folder of either.
        runs_dir: where run bundles and batches are (`personagen run --out`).
    """
    batch_id, source, bundles = _resolve(ref, Path(runs_dir))
    sets: dict[str, list[dict[str, Any]]] = {name: [] for name in SETS}
    runs: list[str] = []
    skipped: dict[str, str] = {}
    for bundle in bundles:
        qa = bundle.directory / _QA
        if not qa.is_file():
            if not (bundle.directory / "metadata.json").is_file():
                reason = f"no bundle yet ({bundle.directory} has no metadata.json)"
            else:
                reason = f"no Q/A pairs ({qa.name} missing: not a qa-goal run)"
            if batch_id is None:
                raise ExportError(f"run {bundle.run_id!r}: {reason}")
            skipped[bundle.run_id] = reason
            continue
        persona_file = bundle.directory / "persona.json"
        persona = _read_json(persona_file) if persona_file.is_file() else {}
        name = str(persona.get("name") or "") if isinstance(persona, dict) else ""
        files = [(qa, "accepted"), (bundle.directory / _UNVERIFIED, "unverified")]
        for path, default in files:
            if not path.is_file():
                continue
            for pair in _read_jsonl(path):
                target = _set_of(pair, default)
                if target is not None:
                    row = _row(pair, run_id=bundle.run_id, persona=name, batch_id=batch_id)
                    sets[target].append(row)
        runs.append(bundle.run_id)
    if not runs:
        raise ExportError(
            f"batch {batch_id!r} has no finished run with Q/A pairs to export: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return sets, batch_id, source, runs, skipped


# --- writers ------------------------------------------------------------------------------------


def _score_columns(sets: dict[str, list[dict[str, Any]]]) -> list[str]:
    names: list[str] = []
    for rows in sets.values():
        for row in rows:
            names.extend(k for k in row if k.startswith("score_") and k not in names)
    return names


def _arrow_schema(sets: dict[str, list[dict[str, Any]]], batch: bool) -> Any:
    import pyarrow as pa

    strings = pa.list_(pa.string())
    fields = [
        ("user_input", pa.string()),
        ("reference", pa.string()),
        ("reference_contexts", strings),
        ("reference_context_ids", strings),
        ("retrieved_contexts", strings),
        ("retrieved_context_ids", strings),
        ("persona_name", pa.string()),
        ("run_id", pa.string()),
        ("pair_id", pa.string()),
        ("origin", pa.string()),
        ("iteration", pa.int64()),
        ("sources", strings),
    ]
    if batch:
        fields.append(("batch_id", pa.string()))
    fields.extend((name, pa.float64()) for name in _score_columns(sets))
    return pa.schema(fields)


def _table(rows: list[dict[str, Any]], schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(
        [{name: row.get(name) for name in schema.names} for row in rows], schema=schema
    )


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]], *, ascii_only: bool = False) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=ascii_only) + "\n")


def _golden(row: dict[str, Any]) -> dict[str, Any]:
    """A DeepEval golden (the keys `EvaluationDataset.add_goldens_from_json_file` reads)."""
    metadata = {
        k: v
        for k, v in row.items()
        if k in ("persona_name", "run_id", "pair_id", "batch_id", "origin", "iteration")
        or k.startswith("score_")
    }
    return {
        "input": row["user_input"],
        # An unanswerable question has no expected output (not an empty one to match).
        "expected_output": row["reference"] or None,
        "context": row["reference_contexts"] or None,
        "retrieval_context": row["retrieved_contexts"] or None,
        "name": row["pair_id"],
        "source_file": row["sources"][0] if row["sources"] else None,
        "additional_metadata": metadata,
    }


def chat_line(
    row: dict[str, Any], system_prompt: str | None, with_contexts: bool
) -> dict[str, Any]:
    """One OpenAI chat fine-tuning line: `messages` only, every content a non-empty string."""
    system = system_prompt or ""
    if with_contexts and row["retrieved_contexts"]:
        numbered = "\n\n".join(f"[{i}] {t}" for i, t in enumerate(row["retrieved_contexts"], 1))
        system = f"{system}\n\nContext:\n{numbered}" if system else f"Context:\n{numbered}"
    messages = [{"role": "system", "content": system}] if system.strip() else []
    messages += [
        {"role": "user", "content": row["user_input"]},
        {"role": "assistant", "content": row["reference"]},
    ]
    return {"messages": messages}


def _write_set(
    fmt: str,
    path: Path,
    name: str,
    rows: list[dict[str, Any]],
    schema: Any,
    *,
    system_prompt: str | None,
    with_contexts: bool,
) -> None:
    if fmt == "ragas":
        # ASCII-escaped JSON: Ragas' `from_jsonl` opens the file in the locale's encoding.
        _write_jsonl(path, rows, ascii_only=True)
    elif fmt == "deepeval":
        path.write_text(
            json.dumps([_golden(r) for r in rows], ensure_ascii=False, indent=1) + "\n",
            encoding="utf-8",
        )
    elif fmt == "chat":
        if name == "unanswerable":  # no answer to train on: the questions, as common rows
            _write_jsonl(path, rows)
        else:
            _write_jsonl(path, (chat_line(r, system_prompt, with_contexts) for r in rows))
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(_table(rows, schema), path)
    elif fmt == "csv":
        # Lists as JSON text in their cells (CSV has no lists); pandas quotes newlines and commas.
        frame = _table(rows, schema).to_pandas()
        for column, kind in zip(schema.names, schema.types, strict=True):
            if str(kind).startswith("list"):
                frame[column] = [json.dumps(list(v), ensure_ascii=False) for v in frame[column]]
        frame.to_csv(path, index=False, encoding="utf-8")
    elif fmt == "hf":
        from datasets import Dataset
        from datasets.utils import logging as hf_logging

        if path.exists():
            shutil.rmtree(path)
        # No progress bar (it would garble the CLI's output), and the caller's setting is kept.
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            Dataset(_table(rows, schema)).save_to_disk(str(path))
        finally:
            if shown:
                hf_logging.enable_progress_bar()
    else:  # pragma: no cover - checked by export()
        raise AssertionError(fmt)


def export(
    ref: str | Path,
    format: ExportFormat = "ragas",  # noqa: A002 - the CLI's --format
    *,
    out: str | Path | None = None,
    runs_dir: str | Path = "out",
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    with_contexts: bool = True,
) -> ExportResult:
    """Export a run's or a batch's Q/A pairs for an eval or training tool.

    Args:
        ref: a run id, a batch id (every run of the batch is merged), or the folder of either.
        format: ragas | deepeval | hf | csv | parquet | chat.
        out: the folder to write (default: `<run or batch folder>/export/<format>/`). It gets
            `accepted`, `unanswerable` and `unverified` (files, or folders for hf) and
            `export.json`.
        runs_dir: where runs and batches are (`personagen run --out`), for ids.
        system_prompt: chat format: the system message (None or "": none, unless contexts).
        with_contexts: chat format: add the pair's retrieved contexts to the system message.

    Returns:
        What was written, with the rows per set and any batch runs left out.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    sets, batch_id, source, runs, skipped = collect_rows(ref, runs_dir=runs_dir)
    target = Path(out) if out is not None else source / "export" / format
    if target.exists() and not target.is_dir():
        raise ExportError(f"--out {str(target)!r} is a file, not a folder")
    target.mkdir(parents=True, exist_ok=True)
    schema = (
        _arrow_schema(sets, batch_id is not None) if format in ("hf", "csv", "parquet") else None
    )
    files: dict[str, Path] = {}
    for name in SETS:
        path = target / f"{name}{_EXTENSIONS[format]}"
        _write_set(
            format,
            path,
            name,
            sets[name],
            schema,
            system_prompt=system_prompt,
            with_contexts=with_contexts,
        )
        files[name] = path
    result = ExportResult(
        format=format,
        out=target,
        files=files,
        counts={name: len(rows) for name, rows in sets.items()},
        runs=runs,
        batch_id=batch_id,
        skipped=skipped,
    )
    manifest = {
        "format": format,
        "source": str(source),
        "batch_id": batch_id,
        "runs": runs,
        "skipped": skipped,
        "counts": result.counts,
        "files": {name: path.name for name, path in files.items()},
    }
    (target / MANIFEST_NAME).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return result


export_run = export
"""The same function under the name `personagen.store.export.export_run`."""
