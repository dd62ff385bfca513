"""`personagen export`: a run's or a batch's Q/A pairs for Ragas, DeepEval, HF, pandas or training.

Mounted by the main CLI with `app.command("export")(export_command)`; the work is done by
`personagen.store.export.export`, imported when the command runs.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


class Format(StrEnum):
    """Export formats (see `personagen.store.export`)."""

    ragas = "ragas"
    deepeval = "deepeval"
    hf = "hf"
    csv = "csv"
    parquet = "parquet"
    chat = "chat"


def export_command(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID|BATCH_ID", help="A run or a batch (its runs are merged), or its folder."
        ),
    ],
    format: Annotated[  # noqa: A002 - the option's name
        Format, typer.Option("--format", "-f", help="What to write.", case_sensitive=False)
    ] = Format.ragas,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder to write (default: the run's or batch's folder /export/FORMAT)."
        ),
    ] = None,
    runs_dir: Annotated[
        Path, typer.Option("--from", help="Where runs and batches are (personagen run --out).")
    ] = Path("out"),
    system_prompt: Annotated[
        str | None,
        typer.Option(
            "--system-prompt",
            help="chat: the system message ('' for none); the contexts follow it.",
        ),
    ] = None,
    contexts: Annotated[
        bool,
        typer.Option("--contexts/--no-contexts", help="chat: put the retrieved contexts in it."),
    ] = True,
) -> None:
    """Export accepted pairs (unanswerable and unverified ones in files of their own)."""
    from personagen.store.export import DEFAULT_SYSTEM_PROMPT, export

    result = export(
        ref,
        format.value,
        out=out,
        runs_dir=runs_dir,
        system_prompt=DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt,
        with_contexts=contexts,
    )
    console = Console(highlight=False, soft_wrap=True)
    source = f"batch {result.batch_id}" if result.batch_id else f"run {result.runs[0]}"
    table = Table("set", "rows", "written to", title=f"{source} as {result.format}")
    for name, path in result.files.items():
        table.add_row(name, str(result.counts[name]), str(path))
    console.print(table)
    if result.batch_id:
        console.print(f"{len(result.runs)} run(s) merged")
    for run_id, reason in result.skipped.items():
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[yellow]skipped[/yellow] {run_id}: {reason}"
        )
