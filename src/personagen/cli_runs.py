"""`personagen runs`: list recorded runs, show one in detail, rewrite a run's HTML report.

Mounted by the main CLI with `app.add_typer(runs_app, name="runs")`. Every command takes
`--db URL` (default `$PERSONAGEN_DB_URL`, else `sqlite:///.personagen/runs.sqlite`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from personagen.store.runs import RunDetail, RunStore, RunStoreError, RunSummary

runs_app = typer.Typer(
    help="Recorded runs: list them, show one, rewrite its report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Run store URL (default $PERSONAGEN_DB_URL, else sqlite:///.personagen/runs.sqlite).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _console() -> Console:
    # Built per command so output goes to the current stdout (also under CliRunner).
    return Console(highlight=False, soft_wrap=False)


def _when(value: datetime | None, *, short: bool = False) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _status(run: RunSummary) -> str:
    colour = {"done": "green", "running": "cyan", "failed": "red"}.get(run.status, "yellow")
    return f"[{colour}]{run.status}[/{colour}]"


def _open(db: str | None) -> RunStore:
    return RunStore(db)


@runs_app.command("list")
def list_runs(
    db: DbOption = None,
    status: Annotated[
        str | None, typer.Option(help="Only runs with this status (done, running, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs at most.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List recorded runs, newest first."""
    with _open(db) as store:
        store.mark_stale_runs()  # a run whose process died is not shown `running`
        runs = store.list_runs(limit=limit, status=status)
    console = _console()
    if as_json:
        console.print_json(json.dumps([r.model_dump(mode="json") for r in runs]))
        return
    if not runs:
        console.print(
            f"no runs recorded in {store.display_url}"
            + (f" with status {status!r}" if status else "")
        )
        return
    # Narrow terminals: ids, statuses and figures stay whole; names give way (ellipsis).
    table = Table(
        title=f"runs in {store.display_url}",
        title_justify="left",
        box=None,  # no rules: every character of a narrow terminal goes to the figures
        padding=(0, 1, 0, 0),
        pad_edge=False,
        header_style="bold underline",
    )

    def whole(header: str, values: list[str]) -> int:
        return max(len(header), *(len(v) for v in values))

    table.add_column("id", no_wrap=True, min_width=whole("id", [r.id for r in runs]))
    table.add_column("status", no_wrap=True, min_width=whole("status", [r.status for r in runs]))
    table.add_column("goal", no_wrap=True, overflow="ellipsis", min_width=4)
    table.add_column("persona", no_wrap=True, overflow="ellipsis", min_width=5)
    wide = console.width >= 100  # the model is in `runs show`; narrow lists leave it out
    if wide:
        table.add_column("model", no_wrap=True, overflow="ellipsis", min_width=5)
    table.add_column("started", no_wrap=True, min_width=11)
    table.add_column("runtime", justify="right", no_wrap=True, min_width=7)
    tokens = [f"{r.total_tokens:,}" for r in runs]
    table.add_column("tokens", justify="right", no_wrap=True, min_width=whole("tokens", tokens))
    table.add_column("acc/rej", justify="right", no_wrap=True, min_width=7)
    for run in runs:
        table.add_row(
            run.id,
            _status(run),
            run.goal or "-",
            run.persona or "-",
            *([run.model or "-"] if wide else []),
            _when(run.started_at, short=True),
            _seconds(run.runtime_seconds),
            f"{run.total_tokens:,}",
            f"{_count(run.accepted)}/{_count(run.rejected)}",
        )
    console.print(table)


def _overview(run: RunDetail) -> Table:
    table = Table(title=f"run {run.id}", title_justify="left", show_header=False)
    table.add_column("key", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, str]] = [
        ("status", _status(run) + (f" ({run.reason})" if run.reason else "")),
        ("goal", run.goal or "-"),
        ("persona", run.persona or "-"),
        ("model", f"{run.model or '-'}" + (f" ({run.provider})" if run.provider else "")),
        ("started", _when(run.started_at)),
        ("ended", _when(run.ended_at)),
        ("runtime", _seconds(run.runtime_seconds)),
        ("iterations", _count(run.iterations)),
        (
            "tokens",
            f"{run.total_tokens:,} ({run.input_tokens:,} in, {run.output_tokens:,} out) "
            f"in {run.llm_calls:,} call(s), {run.cache_hits:,} cached",
        ),
        (
            "items",
            f"{_count(run.questions)} questions: {_count(run.accepted)} accepted, "
            f"{_count(run.rejected)} rejected, {_count(run.unanswerable)} unanswerable",
        ),
        (
            "baseline met",
            "-" if run.baseline_met is None else ("yes" if run.baseline_met else "[red]no[/red]"),
        ),
        ("bundle", run.bundle_dir or "-"),
    ]
    report = Path(run.bundle_dir) / "report.html" if run.bundle_dir else None
    if report is not None and report.is_file():
        rows.append(("report", str(report)))
    for key, value in rows:
        table.add_row(key, value)
    return table


def _stages(run: RunDetail) -> Table:
    table = Table(title="stages", title_justify="left")
    for name in ("node", "iter", "runs", "seconds", "calls", "in tok", "out tok", "cached"):
        table.add_column(name, justify="left" if name == "node" else "right", no_wrap=True)
    table.add_column("retries", justify="right", no_wrap=True)
    for s in run.stages:
        table.add_row(
            s.node,
            str(s.iteration),
            str(s.runs),
            f"{s.seconds:.2f}",
            str(s.llm_calls),
            f"{s.input_tokens:,}",
            f"{s.output_tokens:,}",
            str(s.cache_hits),
            f"{s.retries}" + (f" (+{s.repairs} repairs)" if s.repairs else ""),
        )
    return table


def _scores(run: RunDetail) -> Table:
    """One row per metric, one column per iteration: metric names are never cut."""
    metrics = list(dict.fromkeys(m for it in run.scores for m in it.scores))
    table = Table(title="scores per iteration", title_justify="left")
    table.add_column("metric", no_wrap=True)
    table.add_column("baseline", justify="right", no_wrap=True, style="dim")
    for it in run.scores:
        table.add_column(f"iter {it.iteration}", justify="right", no_wrap=True)
    for metric in metrics:
        floor = run.baseline.get(metric)
        cells = []
        for it in run.scores:
            value = it.scores.get(metric)
            text = "-" if value is None else f"{value:.2f}"
            if value is not None and floor is not None and value < floor:
                text = f"[red]{text}[/red]"
            cells.append(text)
        table.add_row(metric, "" if floor is None else f"{floor:.2f}", *cells)
    table.add_section()
    table.add_row(
        "acc/fail/unans",
        "",
        *[f"{it.accepted}/{it.failing}/{it.unanswerable}" for it in run.scores],
    )
    table.add_row(
        "baseline met", "", *["yes" if it.baseline_met else "[red]no[/red]" for it in run.scores]
    )
    return table


def _shortfalls(run: RunDetail) -> list[str]:
    return [
        f"  iteration {it.iteration}: {'; '.join(it.shortfalls)}"
        for it in run.scores
        if it.shortfalls
    ]


@runs_app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one run: overview, stages, scores per iteration, warnings, recommendations."""
    with _open(db) as store:
        store.mark_stale_runs()
        run = store.get_run(run_id)
    console = _console()
    if as_json:
        console.print_json(run.model_dump_json())
        return
    console.print(_overview(run))
    if run.token_usage:
        usage = Table(title="token usage per model", title_justify="left")
        for name in ("model", "calls", "input", "output", "seconds", "cached"):
            usage.add_column(name, justify="left" if name == "model" else "right")
        for u in run.token_usage:
            usage.add_row(
                u.model,
                str(u.calls),
                f"{u.input_tokens:,}",
                f"{u.output_tokens:,}",
                f"{u.seconds:.2f}",
                str(u.cache_hits),
            )
        console.print(usage)
    if run.stages:
        console.print(_stages(run))
    if run.scores:
        console.print(_scores(run))
        for line in _shortfalls(run):
            console.print(line, markup=False)
    for level, events in (("warnings", run.warnings), ("errors", run.errors)):
        if events:
            console.print(f"[bold]{level}[/bold] ({len(events)})")
            for e in events:
                item = f" [{e.item_id}]" if e.item_id else ""
                console.print(f"  - {e.stage}{item}: {e.message}", markup=False)
    if run.recommendations:
        console.print(f"[bold]recommendations[/bold] ({len(run.recommendations)})")
        for rec in run.recommendations:
            console.print(f"  - {rec.get('kind', '?')}: {rec.get('message', '')}", markup=False)
            for evidence in list(rec.get("evidence") or [])[:5]:
                console.print(f"      {evidence}", markup=False)
    if run.artifacts:
        console.print("[bold]files[/bold]")
        for a in run.artifacts:
            size = f"{a.bytes:,} bytes" if a.bytes is not None else "missing"
            console.print(f"  {a.path} ({size})", markup=False)


@runs_app.command("report")
def report_run(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    db: DbOption = None,
) -> None:
    """(Re)write the run's report.html from its bundle and print its path."""
    from personagen.store.report import write_report_from_bundle

    with _open(db) as store:
        run = store.get_run(run_id)
    if not run.bundle_dir or not (Path(run.bundle_dir) / "metadata.json").is_file():
        raise RunStoreError(
            f"run {run_id!r} has no readable bundle"
            + (f" at {run.bundle_dir}" if run.bundle_dir else "")
            + ": it did not finish, or its files were moved"
        )
    path = write_report_from_bundle(Path(run.bundle_dir))
    _console().print(str(path), markup=False)
