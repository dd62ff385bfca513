"""`personagen batch`: run a batch file, resume a batch after any crash, show where it stands.

Mounted by the main CLI with `app.add_typer(batch_app, name="batch")`. Checkpoints go to
`--db` (default `$PERSONAGEN_BATCH_DB_URL`, else one SQLite file per run in
`STATE_DIR/checkpoints/`); the ray backend needs Postgres and the `ray` extra.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from personagen.batch._checkpoints import DB_URL_ENV
from personagen.batch.summary import SUMMARY, BatchProgress

batch_app = typer.Typer(
    help="Batches of runs: many specs, or personas x data; resumable after any crash.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class BackendName(StrEnum):
    """Where the runs run."""

    local = "local"
    ray = "ray"


OutOption = Annotated[
    Path, typer.Option("--out", help="Batches go to OUT/BATCH_ID/ (bundles in runs/).")
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        envvar=DB_URL_ENV,
        show_envvar=True,
        help="Checkpoints: a postgresql:// URL, or a folder for one SQLite file per run "
        "(default: STATE_DIR/checkpoints/).",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address", help="'local' starts a cluster for this batch; else join this one."
    ),
]
ActorsOption = Annotated[
    int | None, typer.Option("--ray-actors", min=1, help="Ray workers (default: cluster CPUs).")
]
RetriesOption = Annotated[
    int | None,
    typer.Option("--ray-max-retries", min=0, help="Ray: restarts of a dead worker (default 3)."),
]
LockOption = Annotated[
    float | None,
    typer.Option(
        "--lock-timeout", min=0, help="Seconds to wait for a run another runner still holds."
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
RetriesRunOption = Annotated[
    int | None,
    typer.Option("--retries", min=0, help="Further attempts at a failed run (it resumes)."),
]


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _out() -> Console:
    # Built per command so output goes to the current stdout (also under CliRunner).
    return Console(highlight=False, soft_wrap=False)


@contextmanager
def _progress_view(quiet: bool) -> Iterator[Callable[[BatchProgress], None] | None]:
    """A progress callback: a live bar on a terminal, one line per finished run otherwise."""
    if quiet:
        yield None
        return
    console = _err()
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress(
            BarColumn(),
            MofNCompleteColumn(),
            "{task.description}",
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("starting", total=None)

            def show(p: BatchProgress) -> None:
                bar.update(
                    task,
                    total=p.total,
                    completed=p.finished,
                    description=f"{p.running} running, {p.failed} failed, {p.tokens:,} tokens",
                )
                if p.run_id and p.status not in (None, "running", "pending"):
                    bar.console.print(f"{p.status:<9} {p.run_id}")

            yield show
        return

    def lines(p: BatchProgress) -> None:
        if p.run_id and p.status not in (None, "running", "pending"):
            console.print(
                f"[{p.finished:>{len(str(p.total))}}/{p.total}] {p.status:<9} {p.run_id} "
                f"({p.running} running, {p.failed} failed, {p.tokens:,} tokens)"
            )

    yield lines


def _print_report(summary: dict[str, Any], batch_dir: Path, *, limit: int = 50) -> None:
    runs = summary["runs"]
    shown = runs if len(runs) <= limit else [r for r in runs if r["status"] != "done"][:limit]
    table = Table("run", "status", "tokens", "bundle / error", title=f"batch {summary['batch_id']}")
    for run in shown:
        colour = {"done": "green", "failed": "red", "running": "cyan"}.get(run["status"], "yellow")
        detail = run["bundle_dir"] if run["status"] == "done" else (run["error"] or "-")
        table.add_row(
            run["id"], f"[{colour}]{run['status']}[/{colour}]", f"{run['tokens']:,}", str(detail)
        )
    console = _out()
    if shown:
        console.print(table)
    counts = summary["counts"]
    console.print(
        f"{summary['status']}: {counts['done']}/{counts['total']} done, {counts['failed']} "
        f"failed, {counts['other'] + counts['pending'] + counts['running']} other; "
        f"{summary['tokens']:,} tokens; summary {batch_dir / SUMMARY}"
    )
    if summary["status"] != "done":
        console.print(f"finish with: personagen batch resume {summary['batch_id']}")


@batch_app.command("run")
def run_command(
    batch_file: Annotated[Path, typer.Argument(metavar="BATCH.yaml", help="The batch file.")],
    backend: Annotated[
        BackendName, typer.Option(help="local: asyncio in this process; ray: a Ray cluster.")
    ] = BackendName.local,
    ray_address: RayAddressOption = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Runs at once per worker process (local: this one).")
    ] = 8,
    db: DbOption = None,
    out_dir: OutOption = Path("out"),
    state_dir: Annotated[
        Path, typer.Option(help="Chunk store, usage log, cache (and default checkpoints).")
    ] = Path(".personagen"),
    max_tokens: Annotated[int | None, typer.Option(help="Token budget per run.")] = None,
    ray_actors: ActorsOption = None,
    max_retries: RetriesOption = None,
    lock_timeout: LockOption = None,
    retries: RetriesRunOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run every run of a batch file; a second call resumes what is unfinished."""
    from personagen.batch.runner import arun_batch
    from personagen.batch.spec import load_batch

    plan = load_batch(batch_file)
    if not quiet:
        _err().print(
            f"batch {plan.batch_id}: {len(plan.items)} run(s), backend {backend.value}; "
            f"resume with: personagen batch resume {plan.batch_id}"
        )
    with _progress_view(quiet) as progress:
        report = asyncio.run(
            arun_batch(
                plan,
                backend=backend.value,
                out_dir=out_dir,
                state_dir=state_dir,
                checkpoint=db,
                concurrency=concurrency,
                max_tokens=max_tokens,
                lock_timeout=30.0 if lock_timeout is None else lock_timeout,
                retries=1 if retries is None else retries,
                progress=progress,
                ray_address=ray_address,
                ray_actors=ray_actors,
                ray_max_retries=max_retries,
            )
        )
    _print_report(report.summary, report.batch_dir)
    if report.status != "done":
        raise typer.Exit(code=3)


@batch_app.command("resume")
def resume_command(
    batch_id: Annotated[
        str, typer.Argument(metavar="BATCH_ID", help="The batch id, or its folder.")
    ],
    out_dir: OutOption = Path("out"),
    backend: Annotated[
        BackendName | None, typer.Option(help="Override the backend the batch ran with.")
    ] = None,
    ray_address: RayAddressOption = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Runs at once per worker process.")
    ] = None,
    db: DbOption = None,
    ray_actors: ActorsOption = None,
    max_retries: RetriesOption = None,
    lock_timeout: LockOption = None,
    retries: RetriesRunOption = None,
    quiet: QuietOption = False,
) -> None:
    """Finish whatever a batch left unfinished; finished runs are not run again."""
    from personagen.batch.runner import aresume_batch

    with _progress_view(quiet) as progress:
        report = asyncio.run(
            aresume_batch(
                batch_id,
                out_dir=out_dir,
                backend=backend.value if backend else None,
                checkpoint=db,
                concurrency=concurrency,
                lock_timeout=lock_timeout,
                retries=retries,
                progress=progress,
                ray_address=ray_address,
                ray_actors=ray_actors,
                ray_max_retries=max_retries,
            )
        )
    _print_report(report.summary, report.batch_dir)
    if report.status != "done":
        raise typer.Exit(code=3)


@batch_app.command("status")
def status_command(
    batch_id: Annotated[
        str, typer.Argument(metavar="BATCH_ID", help="The batch id, or its folder.")
    ],
    out_dir: OutOption = Path("out"),
    as_json: Annotated[bool, typer.Option("--json", help="Print batch.json.")] = False,
) -> None:
    """Show where a batch stands (from its batch.json)."""
    import json

    from personagen.batch.runner import find_batch_dir
    from personagen.batch.summary import read_json

    batch_dir = find_batch_dir(batch_id, out_dir)
    summary_path = batch_dir / SUMMARY
    if not summary_path.is_file():
        _out().print(f"batch {batch_id}: started, no run finished yet ({summary_path} missing)")
        return
    summary = read_json(summary_path, "batch summary")
    if as_json:
        _out().print_json(json.dumps(summary))
        return
    _print_report(summary, batch_dir)
