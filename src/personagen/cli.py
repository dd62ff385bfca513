"""The `personagen` command: run, resume, review, validate, estimate, goals (runs, batch).

Errors print one clear line naming the flag, key path, file or URL and the offending value;
`--debug` shows the traceback instead. Exit codes (`EXIT_*` below, tabled in the README):
0 done with output, 2 bad input, 3 nothing accepted, 4 failed, 5 paused for review,
6 stopped resumable, 130 interrupted. Ctrl-C stops a run within ~2 s, resumable.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

import personagen
from personagen.errors import PersonaGenError

app = typer.Typer(
    name="personagen",
    help="Personalize any data to a persona with LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
goals_app = typer.Typer(help="The goal library.", invoke_without_command=True)
app.add_typer(goals_app, name="goals")


def _mount_subcommands() -> None:
    # Imported here so `personagen --help` stays fast; each sub-app imports lazily inside.
    from personagen.cli_batch import batch_app
    from personagen.cli_export import export_command
    from personagen.cli_runs import runs_app

    app.add_typer(runs_app, name="runs", help="Past runs from the run store.")
    app.add_typer(
        batch_app,
        name="batch",
        help="Batches of runs: many specs, or personas x data; resumable after any crash.",
    )
    app.command("export")(export_command)


_mount_subcommands()
console = Console(stderr=True)
out = Console()
_debug = False


def _version(value: bool) -> None:
    if value:
        out.print(f"personagen {personagen.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """PersonaGen: persona-grounded Q/A over your data, judged, constraint-gated, RAG-ready."""
    global _debug
    _debug = debug


def _apply_overrides(
    spec: Any,
    provider: str | None,
    model: str | None,
    base_url: str | None,
    structured_output: str | None = None,
) -> Any:
    updates: dict[str, Any] = {}
    if structured_output:
        updates["structured_output"] = structured_output
    if provider:
        updates["provider"] = provider
    if model:
        updates["model"] = model
    if base_url:
        updates["base_url"] = base_url
    if not updates:
        return spec
    from pydantic import ValidationError

    from personagen.errors import SpecError
    from personagen.state.spec import LLMSettings

    try:
        llm = LLMSettings.model_validate({**spec.llm.model_dump(exclude_unset=True), **updates})
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        flag = "--" + key.replace("_", "-") if key in updates else f"llm.{key}"
        message = error["msg"].removeprefix("Value error, ")
        raise SpecError(f"{flag} {updates.get(key, error.get('input'))!r}: {message}") from exc
    return spec.model_copy(update={"llm": llm})


def _check_run_id(value: str | None) -> str | None:
    import re

    from personagen.store.run_records import RUN_ID_PATTERN

    if value is not None and not re.match(RUN_ID_PATTERN, value):
        raise typer.BadParameter(
            "use letters, digits and . _ - : (at most 128; it names the bundle folder)"
        )
    return value


def _given_value(opts: list[str]) -> str | None:
    """The value the user typed for an option, from the command line."""
    args = sys.argv[1:]
    for index, token in enumerate(args):
        for opt in opts:
            if token == opt and index + 1 < len(args):
                return args[index + 1]
            if token.startswith(opt + "="):
                return token[len(opt) + 1 :]
    return None


def _usage_error_line(exc: Exception) -> str:
    """One line for a command-line usage error, naming the flag or argument and the value."""
    ctx = getattr(exc, "ctx", None)
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:  # the root's name may be `python -m ...`
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    command = " ".join(["personagen", *names])
    message = str(getattr(exc, "message", "") or exc).strip().rstrip(".")
    kind = type(exc).__name__
    if kind == "NoSuchOption":
        hint = sorted(getattr(exc, "possibilities", None) or [])
        return f"{command}: unknown option {exc.option_name}" + (  # type: ignore[attr-defined]
            f" (did you mean {' or '.join(hint)}?)" if hint else ""
        )
    param = getattr(exc, "param", None)
    if param is not None:
        opts = list(getattr(param, "opts", []) or [])
        is_option = bool(opts) and opts[0].startswith("-")
        name = opts[0] if is_option else str(getattr(param, "name", "") or "argument").upper()
        if kind == "MissingParameter":
            return f"{command}: missing {'option' if is_option else 'argument'} {name}"
        value = _given_value(opts) if is_option else None
        shown = f" {value!r}" if value is not None else ""
        return f"{command}: {name}{shown}: {message}"
    return f"{command}: {message}"


class _ProgressView:
    """Shows the run's progress events: counts per stage, tokens vs the estimate, ETA.

    The bar tracks tokens against the pre-run estimate when there is one (a resumed run has
    none: the bar then only pulses).
    """

    def __init__(self, progress: Progress, expected_tokens: int | None = None) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=expected_tokens)

    def __call__(self, event: dict[str, Any]) -> None:
        if event["mode"] != "progress":
            return
        from personagen.progress import describe

        snapshot = event["data"]
        total = snapshot.get("expected_tokens")
        self.progress.update(
            self.task,
            description=describe(snapshot),
            completed=min(snapshot.get("tokens", 0), total) if total else None,
        )


EXIT_DONE = 0
"""Done, with at least one accepted pair (or the summary / a rewrite accepted)."""
EXIT_ERROR = 1
"""An unexpected error (a bug): the message says to rerun with --debug."""
EXIT_USAGE = 2
"""Bad command line, spec, goal file or data source: nothing ran."""
EXIT_NOTHING_ACCEPTED = 3
"""The run finished but accepted nothing (see rejected.jsonl for why)."""
EXIT_FAILED = 4
"""The run failed: model output never parsed, the endpoint stayed down, a hook failed."""
EXIT_REVIEW = 5
"""The run is paused at a review hook: `personagen review RUN_ID`."""
EXIT_STOPPED = 6
"""Stopped resumable: token budget spent, a hook's StopRun, a time limit."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (or SIGTERM): `personagen resume RUN_ID`."""


def _exit_code(result: Any) -> int:
    from personagen.outcome import produced_anything

    if result.status == "done":
        produced = produced_anything(result.pairs, result.summary, result.rewrites)
        return EXIT_DONE if produced else EXIT_NOTHING_ACCEPTED
    return {
        "failed": EXIT_FAILED,
        "waiting_for_review": EXIT_REVIEW,
        "budget_exhausted": EXIT_STOPPED,
        "stopped": EXIT_STOPPED,
        "interrupted": EXIT_STOPPED,  # a time limit; Ctrl-C exits 130 before this
    }.get(result.status, EXIT_FAILED)


def _exit_with(result: Any) -> None:
    code = _exit_code(result)
    if result.status == "failed" and result.reason:
        console.print(f"[red]error:[/red] {result.reason}", highlight=False, soft_wrap=True)
    elif code == EXIT_NOTHING_ACCEPTED:
        console.print(
            f"nothing accepted: see the reasons in {result.bundle_dir}/rejected.jsonl",
            highlight=False,
            soft_wrap=True,
        )
    if code:
        raise typer.Exit(code=code)


def _print_result(result: Any) -> None:
    # The id on a line of its own, never wrapped into the table's width: it is copied.
    out.print(f"run {result.run_id}: {result.status}", soft_wrap=True, highlight=False)
    table = Table(show_header=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("bundle", str(result.bundle_dir or "-"))
    if result.summary is not None:  # the summary goal: one text
        sections = len(result.summary.sections)
        table.add_row("summary", f"{result.summary.status}, {sections} section(s)")
    elif result.rewrites:  # rewrite goals: one output per unit
        statuses = Counter(item.status for item in result.rewrites.values())
        table.add_row("rewrites", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    else:
        table.add_row("accepted", str(len(result.accepted)))
        if result.unverified:
            table.add_row("unverified", f"{len(result.unverified)} (unverified.jsonl)")
        table.add_row("rejected", str(len(result.rejected)))
    table.add_row("tokens", str(result.tokens))
    metadata_file = result.bundle_dir / "metadata.json" if result.bundle_dir else None
    if metadata_file is not None and metadata_file.is_file():
        import json

        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        cost = metadata["usage"]["totals"].get("cost")
        if cost:
            table.add_row("cost", str(cost))
        selftest = metadata.get("judge_selftest") or {}
        if selftest.get("metrics"):
            # Which judges decided, and which could not tell right from wrong answers.
            table.add_row(
                "judges",
                ", ".join(
                    f"{m} {'ok' if v['passed'] else 'FAILED'} (AUC {v['auc'] or 0:.2f})"
                    for m, v in selftest["metrics"].items()
                ),
            )
    if result.reports:
        last = result.reports[-1]
        table.add_row("iterations", str(last.iteration))
        table.add_row("scores", ", ".join(f"{k} {v:.2f}" for k, v in last.scores.items()) or "-")
        table.add_row("baseline met", "yes" if last.baseline_met else "no")
    warnings = [e for e in result.events if e.level == "warning"]
    if warnings:
        table.add_row("warnings", str(len(warnings)))
    if result.reason:
        table.add_row("stopped", result.reason)
    out.print(table)
    if result.status == "waiting_for_review":
        hook = result.interrupt.get("hook") if isinstance(result.interrupt, dict) else "?"
        console.print(
            f"waiting for review at hook '{hook}': personagen review {result.run_id} "
            "[--decisions FILE | --approve-all]",
            soft_wrap=True,
            highlight=False,
        )
    elif result.status == "budget_exhausted":
        console.print(
            f"continue with: personagen resume {result.run_id} --max-tokens N",
            soft_wrap=True,
            highlight=False,
        )


INTERRUPT_GRACE_SECONDS = 2.0
"""After Ctrl-C, seconds the run gets to record its end before the process exits anyway.

Finished work is already checkpointed (each step is written before the next starts) and
every model call's tokens are logged as it returns, so nothing is lost by not waiting for
calls in flight (a local model's call cannot be cancelled mid-way; an HTTP call can)."""
_current_run: str | None = None


def _resume_line(run_id: str | None) -> str:
    return f"interrupted: resume with personagen resume {run_id or 'RUN_ID'}"


def _record_interrupted(run_id: str, state_dir: Path) -> None:
    """Record a run as interrupted with the tokens its calls logged (best effort, bounded)."""
    import threading

    def record() -> None:
        from personagen.llm.usage import UsageLog
        from personagen.store.runs import RunStore, default_db_url

        log_path = state_dir / "usage.sqlite"
        usage = None
        if log_path.is_file():
            log = UsageLog(log_path)
            try:
                usage = log.totals(run_id)
            finally:
                log.close()
        with RunStore(default_db_url(state_dir)) as store:
            store.record_status(run_id, "interrupted", "interrupted (Ctrl-C)", usage=usage)

    def guarded() -> None:
        try:
            record()
        except Exception:  # noqa: BLE001, S110 - a stale-run check records it later anyway
            pass

    worker = threading.Thread(target=guarded, daemon=True)
    worker.start()
    worker.join(timeout=1.0)


def _run_interruptible(
    make_coro: Any, run_id: str, progress: Progress | None, state_dir: Path | None = None
) -> Any:
    """Run the coroutine; Ctrl-C (or SIGTERM) cancels it and exits 130 within ~2 s.

    The first signal cancels the run (it records `interrupted` and the tokens it spent);
    if that takes longer than `INTERRUPT_GRACE_SECONDS`, or on a second signal, the process
    leaves at once. `os._exit` because threads still inside a model call would otherwise
    hold the interpreter's exit until their call returns.
    """
    import os
    import signal
    import threading

    loop = asyncio.new_event_loop()
    main = loop.create_task(make_coro())
    signals = 0
    leaving = threading.Lock()

    def leave() -> None:
        if not leaving.acquire(blocking=False):
            return
        if progress is not None:
            try:
                progress.stop()
            except Exception:  # noqa: BLE001, S110 - the terminal is ours to leave either way
                pass
        if state_dir is not None and not main.done():
            _record_interrupted(run_id, state_dir)  # the run could not record it in time
        console.print(_resume_line(run_id), highlight=False, soft_wrap=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            leave()
        loop.call_soon_threadsafe(main.cancel)
        timer = threading.Timer(INTERRUPT_GRACE_SECONDS, leave)
        timer.daemon = True
        timer.start()

    # A Python-level handler, not `loop.add_signal_handler`: it runs between bytecodes even
    # while the loop thread is busy (a 4 s import of ragas, CPU-bound scoring), so the grace
    # timer starts at the keypress, not when the loop next polls.
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():  # only there can it listen
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return loop.run_until_complete(main)
    except BaseException:
        if signals:
            leave()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not signals:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()


def _drive(
    coro_factory: Any,
    quiet: bool,
    run_id: str,
    state_dir: Path | None = None,
    expected_tokens: int | None = None,
) -> Any:
    global _current_run
    _current_run = run_id
    if quiet or not console.is_terminal:
        return _run_interruptible(lambda: coro_factory(None), run_id, None, state_dir)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        return _run_interruptible(
            lambda: coro_factory(_ProgressView(progress, expected_tokens)),
            run_id,
            progress,
            state_dir,
        )


CHECKPOINT_HELP = (
    "Where the run's checkpoints are: a SQLite file or a postgresql:// URL (default: the "
    "run's own file under STATE_DIR/checkpoints/ if a batch made one, else "
    "STATE_DIR/checkpoints.sqlite)."
)


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="The run spec (YAML or JSON).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("out"),
    state_dir: Annotated[Path, typer.Option(help="Checkpoints and chunk store.")] = Path(
        ".personagen"
    ),
    run_id: Annotated[
        str | None, typer.Option(help="Run id (new by default).", callback=_check_run_id)
    ] = None,
    provider: Annotated[str | None, typer.Option(help="embedded | openai | fake")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (openai provider).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint URL.")] = None,
    structured_output: Annotated[
        str | None,
        typer.Option(help="auto | json_schema | json_mode | function_calling | prompt"),
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Token budget for the run.")] = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Approve every review hook.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Run a spec end to end and write the output bundle."""
    from personagen.api import aresume, arun, new_run_id, register_run
    from personagen.specfile import check_runnable, load_spec
    from personagen.store.run_records import RunLock

    loaded = _apply_overrides(load_spec(spec), provider, model, base_url, structured_output)
    check_runnable(loaded)  # plugins, model file, key: fail before the run has an id
    if auto_approve:
        loaded = loaded.model_copy(
            update={"run": loaded.run.model_copy(update={"auto_approve": True})}
        )
    rid = run_id or new_run_id()
    # The id is shown only once the run can be resumed: its record (spec, out dir) is on disk.
    # Held until this process ends: `runs list` elsewhere sees the run as live from now on.
    RunLock(state_dir, rid).acquire()
    register_run(rid, loaded, out_dir=out_dir, state_dir=state_dir)
    global _current_run
    _current_run = rid
    console.print(
        f"run {rid}: goal {loaded.goal.name}, {len(loaded.data)} data source(s), "
        f"provider {loaded.llm.provider}; resume with: personagen resume {rid}",
        soft_wrap=True,  # one line, never wrapped: it is copied and searched for
        highlight=False,
    )
    expected: int | None = None
    if not any(source.url for source in loaded.data):  # no second download just to estimate
        from personagen.data.loaders import load_sources
        from personagen.estimate import estimate_run
        from personagen.llm.pricing import format_usd

        base = Path(loaded.base_dir) if loaded.base_dir else None
        documents = load_sources(loaded.data, base_dir=base)
        guess = estimate_run(
            loaded,
            characters=sum(d.ref.chars for d in documents),
            documents=len(documents),
            texts=[d.text for d in documents],
        )
        console.print(
            f"estimate: {int(guess.low['calls'])}-{int(guess.high['calls'])} LLM calls, "
            f"{int(guess.low['total_tokens']):,}-{int(guess.high['total_tokens']):,} tokens, "
            f"~{guess.low['seconds']:.0f}-{guess.high['seconds']:.0f} s, "
            f"{format_usd(guess.low.get('cost_usd'))}-{format_usd(guess.high.get('cost_usd'))}",
            soft_wrap=True,
            highlight=False,
        )
        expected = int((guess.low["total_tokens"] + guess.high["total_tokens"]) / 2) or None
    result = _drive(
        lambda progress: arun(
            loaded,
            run_id=rid,
            out_dir=out_dir,
            state_dir=state_dir,
            max_tokens=max_tokens,
            progress=progress,
            expected_tokens=expected,
        ),
        quiet,
        rid,
        state_dir,
        expected,
    )
    result = _review_inline(
        result,
        rid,
        lambda decision: _drive(
            lambda progress: aresume(
                rid, decision=decision, out_dir=out_dir, state_dir=state_dir, progress=progress
            ),
            quiet,
            rid,
            state_dir,
        ),
        quiet,
    )
    _print_result(result)
    _exit_with(result)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: where the run was writing)."),
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="Checkpoints and chunk store.")] = Path(
        ".personagen"
    ),
    max_tokens: Annotated[int | None, typer.Option(min=1, help="New token budget.")] = None,
    checkpoint: Annotated[str | None, typer.Option(help=CHECKPOINT_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Continue an interrupted run from its last checkpoint."""
    from personagen.api import aresume

    result = _drive(
        lambda progress: aresume(
            run_id,
            out_dir=out_dir,
            state_dir=state_dir,
            max_tokens=max_tokens,
            checkpoint=checkpoint,
            progress=progress,
        ),
        quiet,
        run_id,
        state_dir,
    )
    result = _review_inline(
        result,
        run_id,
        _continue_with(run_id, out_dir, state_dir, checkpoint, quiet),
        quiet,
    )
    _print_result(result)
    _exit_with(result)


@app.command()
def review(
    run_id: Annotated[str, typer.Argument(help="A run waiting at a review hook.")],
    decisions: Annotated[
        Path | None, typer.Option(help="A ReviewDecision as YAML or JSON (scripted review).")
    ] = None,
    approve_all: Annotated[bool, typer.Option("--approve-all", help="Approve everything.")] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: where the run was writing)."),
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="Checkpoints and chunk store.")] = Path(
        ".personagen"
    ),
    checkpoint: Annotated[str | None, typer.Option(help=CHECKPOINT_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Answer a review hook (approve / edit / reject items) and continue the run."""
    import yaml

    from personagen.api import pending_review
    from personagen.errors import SpecError

    request = asyncio.run(pending_review(run_id, state_dir=state_dir, checkpoint=checkpoint))
    if request is None:
        raise SpecError(f"run {run_id!r} is not waiting for review")
    if approve_all:
        decision: dict[str, Any] = {"approve_all": True}
    elif decisions is not None:
        try:
            decision = yaml.safe_load(decisions.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"decisions file {str(decisions)!r}: {exc}") from exc
    elif sys.stdin.isatty():
        decision = _ask_interactively(request)
    else:
        raise SpecError("give --decisions FILE or --approve-all (no terminal to ask on)")
    result = _continue_with(run_id, out_dir, state_dir, checkpoint, quiet)(decision)
    _print_result(result)
    _exit_with(result)


def _continue_with(
    run_id: str, out_dir: Path | None, state_dir: Path, checkpoint: str | None, quiet: bool
) -> Callable[[Any], Any]:
    """Continue a paused run with a reviewer's decision, with progress on the terminal."""
    from personagen.api import aresume

    def go(decision: Any) -> Any:
        return _drive(
            lambda progress: aresume(
                run_id,
                decision=decision,
                out_dir=out_dir,
                state_dir=state_dir,
                checkpoint=checkpoint,
                progress=progress,
            ),
            quiet,
            run_id,
            state_dir,
        )

    return go


def _edit_text(prompt: str, original: str) -> str:
    """Ask for a new text with the original already typed in, ready to edit in place."""
    try:
        import readline
    except ImportError:  # no line editing here: show the original as the default
        from rich.prompt import Prompt

        return Prompt.ask(prompt, default=original)
    readline.set_startup_hook(lambda: readline.insert_text(original))
    try:
        return input(f"{prompt}: ").strip() or original
    finally:
        readline.set_startup_hook(None)


def _ask_interactively(request: dict[str, Any]) -> dict[str, Any]:
    from rich.markup import escape
    from rich.prompt import Prompt

    out.print(f"[bold]review: {escape(str(request['hook']))}[/bold] (run {request['run_id']})")
    if request["hook"] == "persona":
        out.print(request.get("persona"), markup=False)
        field = Prompt.ask("field to change (empty to approve)", default="")
        if not field:
            return {"approve_all": True}
        return {"persona": {field: Prompt.ask(f"new value for {field}")}}
    edits_answer = request["hook"] == "answers"
    items: dict[str, Any] = {}
    for item in request["items"]:
        out.print(f"\n[bold]{escape(item['id'])}[/bold] {escape(item['question'])}")
        if item.get("answer"):
            out.print(f"  answer: {item['answer']}", markup=False)
        if item.get("reasons"):
            out.print(f"  reasons: {'; '.join(item['reasons'])}", markup=False)
        action = Prompt.ask("approve / edit / reject", choices=["a", "e", "r"], default="a")
        if action == "e":
            original = str(item.get("answer" if edits_answer else "question") or "")
            text = _edit_text("answer" if edits_answer else "question", original)
            items[item["id"]] = {"action": "edit", "text": text}
        elif action == "r":
            items[item["id"]] = {
                "action": "reject",
                "note": Prompt.ask("why (fed back)", default=""),
            }
    return {"items": items}


def _review_inline(result: Any, run_id: str, drive_resume: Any, quiet: bool) -> Any:
    """On a terminal, answer each review hook right here and continue the run.

    Without a terminal (or with --quiet) the run stays paused, as before: exit 5 and the
    `personagen review` line.
    """
    interactive = not quiet and sys.stdin.isatty() and console.is_terminal
    while interactive and result.status == "waiting_for_review" and result.interrupt:
        decision = _ask_interactively(result.interrupt)
        result = drive_resume(decision)
    return result


@app.command()
def estimate(spec: Annotated[Path, typer.Argument(help="The run spec (YAML or JSON).")]) -> None:
    """Estimate LLM calls, tokens and time before running; makes no LLM call."""
    from personagen.data.loaders import load_sources
    from personagen.estimate import estimate_run
    from personagen.llm.pricing import format_usd
    from personagen.specfile import load_spec

    loaded = load_spec(spec)
    documents = load_sources(
        loaded.data, base_dir=Path(loaded.base_dir) if loaded.base_dir else None
    )
    result = estimate_run(
        loaded,
        characters=sum(d.ref.chars for d in documents),
        documents=len(documents),
        texts=[d.text for d in documents],
    )
    table = Table("stage (first pass)", "calls", "input tokens", "output tokens", title=str(spec))
    for stage in result.first_pass:
        table.add_row(
            stage.stage, str(stage.calls), f"{stage.input_tokens:,}", f"{stage.output_tokens:,}"
        )
    out.print(table)
    for label, totals in (("low", result.low), ("high", result.high)):
        out.print(
            f"{label}: {int(totals['calls'])} calls, {int(totals['total_tokens']):,} tokens, "
            f"~{totals['seconds']:.0f} s, {format_usd(totals.get('cost_usd'))}"
        )
    for line in result.assumptions:
        out.print(f"  assumes {line}", highlight=False)


@app.command()
def validate(spec: Annotated[Path, typer.Argument(help="The run spec (YAML or JSON).")]) -> None:
    """Check the spec, the goal and every data source; make no LLM call."""
    from personagen.data.loaders import load_sources
    from personagen.prompts.library import resolve_goal
    from personagen.specfile import check_runnable, load_spec

    loaded = load_spec(spec)
    goal = resolve_goal(loaded.goal, base_dir=loaded.base_dir)
    check_runnable(loaded)
    documents = load_sources(
        loaded.data, base_dir=Path(loaded.base_dir) if loaded.base_dir else None
    )
    table = Table(title=f"{spec}: valid", show_header=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    persona = loaded.persona
    table.add_row("persona", f"{persona.name} ({persona.language}): {persona.description[:80]}")
    table.add_row("custom questions", str(len(persona.custom_questions)))
    table.add_row("goal", f"{goal.name} ({goal.source}), loop {goal.loop}")
    table.add_row("params", ", ".join(f"{k}={v}" for k, v in goal.params.items()))
    table.add_row("baseline", ", ".join(f"{k}>={v}" for k, v in goal.baseline.items()))
    table.add_row(
        "documents",
        f"{len(documents)} ({sum(d.ref.bytes for d in documents):,} bytes, "
        f"{sum(d.ref.chars for d in documents):,} characters)",
    )
    rules = [r.label for _, r in loaded.constraints.rules]
    table.add_row("constraints", ", ".join(rules) or "none")
    table.add_row(
        "llm", f"{loaded.llm.provider} {loaded.llm.model or loaded.llm.model_path or ''}".strip()
    )
    table.add_row("iterations", f"at most {loaded.run.max_iterations}")
    out.print(table)
    for document in documents:
        ref = document.ref
        out.print(
            f"  {ref.source} [{ref.format}, {ref.chars:,} chars]", soft_wrap=True, highlight=False
        )


@goals_app.callback()
def goals(ctx: typer.Context) -> None:
    """List the goals in the library."""
    if ctx.invoked_subcommand is not None:
        return
    from personagen.prompts.library import list_goals

    table = Table("goal", "loop", "metrics", "description")
    for goal in list_goals():
        table.add_row(goal.name, goal.loop, ", ".join(goal.metrics), goal.description)
    out.print(table)


@goals_app.command("show")
def goals_show(
    name: Annotated[str, typer.Argument(help="Library goal name or goal file.")],
) -> None:
    """Print one goal: parameters, baseline and prompts."""
    import yaml

    from personagen.prompts.library import load_goal_definition

    definition, source = load_goal_definition(name)

    class _Dumper(yaml.SafeDumper):
        """Multi-line text (prompts) as literal blocks: line breaks as written, not doubled."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None  # PyYAML quotes it if a block cannot hold it
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, text)
    dumped = yaml.dump(
        definition.model_dump(exclude_none=True),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=10_000,  # never fold long lines: the output is YAML one can copy into a file
    )
    # Plain stdout: Rich would wrap long lines, breaking the YAML.
    sys.stdout.write(f"# {source}\n{dumped}")


def main() -> None:
    """Entry point: run the app, turning known errors into one clear line."""
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except PersonaGenError as exc:
        if _debug:
            raise
        from personagen.errors import LLMError, PluginError

        # Errors while the run works (model, endpoint, hook) are failures, not bad input.
        failed = isinstance(exc, LLMError | PluginError) and _current_run is not None
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_FAILED if failed else EXIT_USAGE)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        console.print(_resume_line(_current_run), highlight=False, soft_wrap=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - Click usage errors and anything unexpected
        if isinstance(exc, typer.TyperException) and hasattr(exc, "format_message"):
            if type(exc).__name__ == "NoArgsIsHelpError":
                console.print(exc.format_message(), highlight=False, markup=False)
                sys.exit(EXIT_USAGE)
            # Typer's vendored Click: usage errors (bad flag, bad value, missing argument).
            line = _usage_error_line(exc)
            console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
            sys.exit(EXIT_USAGE)
        if _debug:
            raise
        console.print(
            f"[red]error:[/red] {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":  # pragma: no cover
    main()
