"""Batches: the batch file, the run-or-resume unit, the local backend, the summary, the CLI.

SQLite checkpoints and the scripted fake model only (no sockets). The Postgres and Ray
backends are tested in tests/integration/test_batch_postgres.py and test_batch_ray.py, which
reuse the helpers here.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import personagen
from personagen.batch import (
    BatchPlan,
    ModelRef,
    aresume_batch,
    arun_batch,
    load_batch,
    parse_batch,
    run_or_resume,
)
from personagen.batch._checkpoints import (
    BatchError,
    normalize_checkpoint,
    resolve_store,
    run_checkpoint,
    without_password,
)
from personagen.batch.spec import run_id_for
from personagen.batch.summary import BatchProgress
from personagen.batch.unit import LOCKED, lock_key, read_state, run_lock
from personagen.cli_batch import batch_app
from personagen.errors import RunNotFound, SpecError
from personagen.llm.fake import FakeChatModel
from personagen.specfile import parse_spec

PERSONAS: list[dict[str, Any]] = [
    {
        "name": "Maya",
        "description": "First-time home buyer and nurse on shifts.",
        "expertise": "novice",
        "goals": ["buy a flat"],
    },
    {
        "name": "Tom",
        "description": "Mortgage broker who explains products to clients.",
        "expertise": "expert",
        "goals": ["compare deposit and rate options"],
    },
    {
        "name": "Ann",
        "description": "Retired teacher selling a house to buy a smaller one.",
        "expertise": "intermediate",
        "goals": ["keep costs low"],
    },
    {
        "name": "Raj",
        "description": "Software engineer buying with a partner.",
        "expertise": "novice",
        "goals": ["understand the fees"],
    },
]
SHARED: dict[str, Any] = {
    "goal": {"name": "qa", "params": {"num_questions": 3}},
    # No response cache: a redone call must be a real (logged) model call.
    "run": {"max_iterations": 1, "max_concurrency": 4, "cache": False},
    "llm": {"provider": "fake"},
}


# --- helpers shared with the integration tests ---------------------------------------------


def write_batch(folder: Path, *, batch_id: str = "homes", personas: int = 4, **shared: Any) -> Path:
    """A personas x data batch over the conftest corpus in `folder/docs` (2 files)."""
    data = {
        "batch_id": batch_id,
        "personas": PERSONAS[:personas],
        "data": ["docs/costs.md", "docs/deposits.md"],
        **SHARED,
        **shared,
    }
    path = folder / f"{batch_id}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def qa_rows(bundle: str | Path) -> list[dict[str, Any]]:
    """The bundle's qa.jsonl rows, by id."""
    lines = (Path(bundle) / "qa.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted((json.loads(line) for line in lines if line.strip()), key=lambda r: r["id"])


async def reference_runs(plan: BatchPlan, folder: Path) -> dict[str, dict[str, Any]]:
    """Each run of the plan run alone (`personagen.arun`): its qa rows, calls and stages."""
    refs: dict[str, dict[str, Any]] = {}
    for item in plan.items:
        model = FakeChatModel()
        result = await personagen.arun(
            item.spec,
            run_id=f"ref-{item.run_id}",
            out_dir=folder / "out",
            state_dir=folder / "state",
            chat_model=model,
        )
        assert result.status == "done", (item.run_id, result.status)
        snapshot = await read_state(f"ref-{item.run_id}", str(folder / "state/checkpoints.sqlite"))
        refs[item.run_id] = {
            "rows": qa_rows(result.bundle_dir),  # type: ignore[arg-type]
            "calls": len(model.calls),
            "stages": stage_counts(snapshot.values),
        }
    return refs


def stage_counts(values: dict[str, Any]) -> Counter[tuple[str, int]]:
    """How often each node ran per iteration, from a run's state."""
    return Counter((stage.node, stage.iteration) for stage in values.get("stages", []))


async def input_checkpoints(target: str, run_id: str) -> int:
    """How many times the run's graph was started with new input (1 unless restarted)."""
    from personagen.graph.checkpoint import open_checkpointer

    async with open_checkpointer(target) as saver:
        sources = [
            tup.metadata.get("source")
            async for tup in saver.alist({"configurable": {"thread_id": run_id}})
        ]
    return sources.count("input")


def saved_calls(snapshot: Any) -> int:
    """Model calls whose results the checkpoint holds (finished nodes and finished tasks).

    The latest snapshot is "live": its values already include the writes of the tasks that
    finished in the step under way.
    """
    return len(snapshot.values.get("llm_calls", []))


def assert_matches_references(report_runs: list[dict[str, Any]], refs: dict[str, Any]) -> None:
    """Every run is done and its qa.jsonl equals its single-run output."""
    assert {r["id"] for r in report_runs} == set(refs)
    for run in report_runs:
        assert run["status"] == "done", run
        assert qa_rows(run["bundle_dir"]) == refs[run["id"]]["rows"], run["id"]


# --- the batch file ------------------------------------------------------------------------


def test_matrix_expands_personas_x_data_with_shared_settings(tmp_path: Path) -> None:
    plan = load_batch(
        write_batch(tmp_path, personas=3, constraints={"filter_out": [{"pii": True}]})
    )
    assert plan.batch_id == "homes" and len(plan.items) == 6
    assert [i.label for i in plan.items[:2]] == [
        "Maya x docs/costs.md",
        "Maya x docs/deposits.md",
    ]
    for item in plan.items:
        assert item.run_id.startswith("homes-") and item.spec.goal.params == {"num_questions": 3}
        assert item.spec.constraints.filter_out[0].pii is True
        assert item.spec.base_dir == str(tmp_path.resolve())
    assert len({i.run_id for i in plan.items}) == 6


def test_run_ids_are_stable_and_follow_the_item(tmp_path: Path) -> None:
    first = load_batch(write_batch(tmp_path))
    again = load_batch(write_batch(tmp_path))
    assert [i.run_id for i in first.items] == [i.run_id for i in again.items]
    # Reordering keeps each item's id; changing an item gives it a new one.
    reordered = load_batch(
        write_batch(tmp_path, personas=4, data=["docs/deposits.md", "docs/costs.md"])
    )
    assert {i.run_id for i in reordered.items} == {i.run_id for i in first.items}
    changed = load_batch(write_batch(tmp_path, goal={"name": "qa", "params": {"num_questions": 4}}))
    assert not {i.run_id for i in changed.items} & {i.run_id for i in first.items}
    # The id does not depend on where the files are (base_dir is left out).
    moved = first.items[0].spec.model_copy(update={"base_dir": "/elsewhere"})
    assert run_id_for("homes", moved) == first.items[0].run_id


def test_runs_list_mixes_spec_files_and_inline_specs(tmp_path: Path, make_spec: Any) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "maya.yaml").write_text(
        yaml.safe_dump(make_spec(data=[{"path": "../docs"}])), encoding="utf-8"
    )
    batch = tmp_path / "Nightly Homes.yml"
    inline = make_spec(persona={"name": "Tom", "description": "Broker."}, data=["docs/costs.md"])
    batch.write_text(yaml.safe_dump({"runs": ["specs/maya.yaml", inline]}), encoding="utf-8")
    plan = load_batch(batch)
    assert plan.batch_id == "Nightly-Homes"  # from the file name
    assert [i.label for i in plan.items] == ["runs.0 (specs/maya.yaml)", "runs.1 (Tom)"]
    assert plan.items[0].spec.base_dir == str((tmp_path / "specs").resolve())
    assert plan.items[1].spec.base_dir == str(tmp_path.resolve())


def test_personas_can_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "people.yaml").write_text(yaml.safe_dump(PERSONAS[:2]), encoding="utf-8")
    plan = parse_batch(
        {"personas": "people.yaml", "data": ["docs/costs.md"], **SHARED}, base_dir=tmp_path
    )
    assert [i.spec.persona.name for i in plan.items] == ["Maya", "Tom"]


BAD_BATCHES = [
    pytest.param(None, "the file is empty", id="none"),
    pytest.param("just some noisy text", "expected a mapping", id="noisy-text"),
    pytest.param({}, "give 'runs'", id="empty"),
    pytest.param({"runs": ["a.yaml"], "personas": ["A buyer"]}, "not both", id="both-modes"),
    pytest.param({"personas": ["A buyer"]}, "'data' is missing", id="no-data"),
    pytest.param({"runz": []}, "runz: unknown key", id="unknown-key"),
    pytest.param(
        {"personas": [{"name": "X"}], "data": ["d.md"]},
        "personas.0.description: required key is missing",
        id="persona-missing-description",
    ),
    pytest.param(
        {"personas": ["A buyer"], "data": [{"path": "a", "url": "http://x"}]},
        "data.0.0: give exactly one of",
        id="bad-source",
    ),
    pytest.param(
        {"runs": ["a.yaml"], "llm": {"provider": "fake"}},
        "llm: shared settings apply to personas x data only",
        id="shared-with-runs",
    ),
    pytest.param(
        {"batch_id": "bad id!", "personas": ["A buyer"], "data": ["d.md"]},
        "batch_id: String should match pattern",
        id="bad-batch-id",
    ),
    pytest.param({"runs": ["missing.yaml"]}, "runs.0: spec file", id="missing-spec-file"),
    pytest.param(
        {"runs": [{"persona": "A buyer"}]},
        "runs.0: data: required key is missing",
        id="inline-spec-invalid",
    ),
    pytest.param(
        {"personas": ["A buyer", "A buyer"], "data": ["d.md"]},
        "asks for exactly the same run as",
        id="duplicate-item",
    ),
    pytest.param(
        {"personas": "nobody.yaml", "data": ["d.md"]},
        "personas: personas file",
        id="missing-personas-file",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_BATCHES)
def test_bad_batch_files_name_the_file_and_key(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_batch(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("runs: [a\n  b: c", "invalid YAML at line"),
    ],
)
def test_unparsable_batch_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match=message):
        load_batch(path)
    with pytest.raises(SpecError, match="does not exist"):
        load_batch(tmp_path / "nope.yaml")


def test_invalid_json_batch(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text('{"runs": [', encoding="utf-8")
    with pytest.raises(SpecError, match=r"b\.json: invalid JSON at line 1"):
        load_batch(path)


# --- small pieces --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ("", None),
        ("state/cp.sqlite", "state/cp.sqlite"),
        ("sqlite:////abs/cp.sqlite", "/abs/cp.sqlite"),
        ("sqlite:///rel.sqlite", "rel.sqlite"),
        ("sqlite://", ":memory:"),
        ("postgresql+psycopg://u:p@127.0.0.1:5/db", "postgresql://u:p@127.0.0.1:5/db"),
        ("postgres://u@localhost/db", "postgresql://u@localhost/db"),
        (
            "postgresql://u@localhost/db?sslmode=disable",
            "postgresql://u@localhost/db?sslmode=disable",
        ),
    ],
)
def test_checkpoint_targets(given: str | None, expected: str | None) -> None:
    assert normalize_checkpoint(given) == expected


def test_batch_checkpoint_stores(tmp_path: Path) -> None:
    assert resolve_store(None, tmp_path) == str(tmp_path.resolve() / "checkpoints")
    assert resolve_store("sqlite:///" + str(tmp_path / "cps"), "x") == str(tmp_path / "cps")
    url = "postgresql+psycopg://u@127.0.0.1:5/db"
    assert resolve_store(url, "x") == "postgresql://u@127.0.0.1:5/db"
    assert run_checkpoint("postgresql://h/db", "r1") == "postgresql://h/db"
    assert run_checkpoint(str(tmp_path), "r1") == str(tmp_path / "r1.sqlite")
    for single_file in ("cp.sqlite", "sqlite:///cp.db", ":memory:"):
        with pytest.raises(BatchError, match="give a folder"):
            resolve_store(single_file, tmp_path)


def test_checkpoint_target_errors_hide_the_password() -> None:
    with pytest.raises(BatchError) as info:
        normalize_checkpoint("mysql://root:hunter2@127.0.0.1/db")
    assert "hunter2" not in str(info.value) and "mysql://" in str(info.value)
    assert without_password("postgresql://u:hunter2@h:5/db") == "postgresql://u@h:5/db"
    assert without_password("postgresql://h/db") == "postgresql://h/db"


def test_model_ref_builds_where_used_and_round_trips(tmp_path: Path) -> None:
    ref = ModelRef(
        "personagen.llm.fake:FakeChatModel", {"latency": 0.01, "model_name": "m-{run_id}"}
    )
    model = ref.build("r1")
    assert isinstance(model, FakeChatModel) and model.latency == 0.01
    assert model.model_name == "m-r1"
    assert ModelRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    with pytest.raises(ValueError, match="package.module:callable"):
        ModelRef("personagen.llm.fake.FakeChatModel")


def test_lock_keys_are_stable_signed_64_bit() -> None:
    assert lock_key("a") == lock_key("a") != lock_key("b")
    assert all(-(2**63) <= lock_key(f"run-{i}") < 2**63 for i in range(100))
    assert len({lock_key(f"run-{i}") for i in range(10_000)}) == 10_000


# --- the unit --------------------------------------------------------------------------------


async def test_runs_share_an_open_checkpointer_and_leave_it_open(
    tmp_path: Path, make_spec: Any
) -> None:
    from personagen.graph.checkpoint import open_checkpointer

    spec = make_spec(run={"max_iterations": 1, "cache": False})
    kwargs: dict[str, Any] = {"out_dir": tmp_path / "out", "state_dir": tmp_path / "state"}
    alone = await personagen.arun(
        spec, run_id="alone", chat_model=FakeChatModel(), out_dir=tmp_path / "ref",
        state_dir=tmp_path / "ref-state",
    )  # fmt: skip
    async with open_checkpointer(str(tmp_path / "shared.sqlite")) as saver:
        runs = await asyncio.gather(
            *(
                personagen.arun(spec, run_id=r, chat_model=FakeChatModel(), checkpointer=saver,
                                **kwargs)
                for r in ("a", "b")
            )
        )  # fmt: skip
        assert [r.status for r in runs] == ["done", "done"]
        for result in runs:
            assert qa_rows(result.bundle_dir) == qa_rows(alone.bundle_dir)  # type: ignore[arg-type]
            config: Any = {"configurable": {"thread_id": result.run_id}}
            assert await saver.aget_tuple(config) is not None  # still open, holding both
        model = FakeChatModel()
        again = await personagen.aresume("a", chat_model=model, checkpointer=saver, **kwargs)
        assert again.status == "done" and not model.calls  # read back from the shared saver
        with pytest.raises(RunNotFound, match="'missing' in AsyncSqliteSaver"):
            await personagen.aresume("missing", checkpointer=saver, **kwargs)
    assert not (tmp_path / "state" / "checkpoints.sqlite").exists()  # no file of its own


async def test_unit_starts_then_reads_back_without_a_model(tmp_path: Path, make_spec: Any) -> None:
    spec = parse_spec(make_spec(run={"max_iterations": 1, "cache": False}))
    model = FakeChatModel()
    kwargs: dict[str, Any] = {"out_dir": tmp_path / "out", "state_dir": tmp_path / "state"}
    first = await run_or_resume("r1", spec, chat_model=model, **kwargs)
    assert first.status == "done" and first.bundle_dir is not None
    made = len(model.calls)
    assert made > 0
    # Done: read back from the checkpoint; the ModelRef is never even built.
    again = await run_or_resume("r1", spec, chat_model=ModelRef("no.such.module:factory"), **kwargs)
    assert again.status == "done" and again.bundle_dir == first.bundle_dir
    assert again.tokens == first.tokens > 0
    assert {p.id for p in again.accepted} == {p.id for p in first.accepted}
    assert len(model.calls) == made


async def test_unit_resumes_a_checkpointed_run(tmp_path: Path, make_spec: Any) -> None:
    spec = parse_spec(make_spec(run={"max_iterations": 1, "cache": False}))
    kwargs: dict[str, Any] = {"out_dir": tmp_path / "out", "state_dir": tmp_path / "state"}
    first_model = FakeChatModel()
    stopped = await run_or_resume("r2", spec, chat_model=first_model, max_tokens=1500, **kwargs)
    assert stopped.status == "budget_exhausted"
    assert first_model.calls_for("QuestionsOut")
    second_model = FakeChatModel()
    finished = await run_or_resume("r2", spec, chat_model=second_model, **kwargs)
    assert finished.status == "done"
    assert not second_model.calls_for("QuestionsOut")  # resumed, not restarted
    assert await input_checkpoints(str(tmp_path / "state/checkpoints.sqlite"), "r2") == 1
    reference = await personagen.arun(
        spec,
        run_id="ref",
        out_dir=tmp_path / "ref",
        state_dir=tmp_path / "ref-state",
        chat_model=FakeChatModel(),
    )
    assert qa_rows(finished.bundle_dir) == qa_rows(reference.bundle_dir)  # type: ignore[arg-type]


async def test_unit_skips_a_run_locked_elsewhere(tmp_path: Path, make_spec: Any) -> None:
    spec = parse_spec(make_spec(run={"max_iterations": 1}))
    target = str(tmp_path / "state/checkpoints.sqlite")
    kwargs: dict[str, Any] = {"out_dir": tmp_path / "out", "state_dir": tmp_path / "state"}
    model = FakeChatModel()
    async with run_lock("r3", target) as held:
        assert held
        result = await run_or_resume("r3", spec, chat_model=model, **kwargs)
        assert result.status == LOCKED and "lock" in (result.reason or "")
        assert not model.calls
        async with run_lock("r3", target, timeout=0.3) as second:
            assert not second

    async def release_soon() -> None:
        async with run_lock("r3", target) as held_again:
            assert held_again
            await asyncio.sleep(0.5)

    holder = asyncio.create_task(release_soon())
    await asyncio.sleep(0.1)
    waited = await run_or_resume("r3", spec, chat_model=model, lock_timeout=20, **kwargs)
    await holder
    assert waited.status == "done"


async def test_a_raising_run_is_retried_but_not_a_bad_spec(monkeypatch: Any) -> None:
    import personagen.batch.unit as unit

    attempts: list[str] = []

    async def flaky(run_id: str, spec: Any, **kwargs: Any) -> Any:
        attempts.append(run_id)
        if run_id == "bad-spec":
            raise SpecError("spec.yaml: persona: required key is missing")
        if len(attempts) < 3:
            raise OSError("connection reset")
        return "finished"

    monkeypatch.setattr(unit, "run_or_resume", flaky)
    assert await unit.run_or_resume_retrying("r", None, retries=2, retry_delay=0) == "finished"
    assert attempts == ["r", "r", "r"]
    attempts.clear()
    with pytest.raises(OSError, match="connection reset"):
        await unit.run_or_resume_retrying("r", None, retries=1, retry_delay=0)
    assert attempts == ["r", "r"]
    attempts.clear()
    with pytest.raises(SpecError):
        await unit.run_or_resume_retrying("bad-spec", None, retries=3, retry_delay=0)
    assert attempts == ["bad-spec"]


async def test_memory_checkpoint_lock() -> None:
    async with run_lock("m", ":memory:") as held:
        assert held
        async with run_lock("m", ":memory:", timeout=0.3) as second:
            assert not second
    async with run_lock("m", ":memory:") as again:
        assert again


# --- the local backend -----------------------------------------------------------------------


async def test_local_batch_matches_single_runs(tmp_path: Path, corpus_dir: Path) -> None:
    plan = load_batch(write_batch(tmp_path))
    assert len(plan.items) == 8
    refs = await reference_runs(plan, tmp_path / "ref")
    seen: list[BatchProgress] = []
    model = FakeChatModel()
    report = await arun_batch(
        plan,
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
        concurrency=3,
        chat_model=model,
        progress=seen.append,
    )
    assert report.status == "done" and report.counts["done"] == 8
    assert_matches_references(report.runs, refs)
    assert len(model.calls) == sum(r["calls"] for r in refs.values())
    # batch.json and the manifest are in the batch folder.
    batch_dir = tmp_path / "out" / "homes"
    summary = json.loads((batch_dir / "batch.json").read_text())
    assert summary["status"] == "done" and summary["tokens"] > 0
    for run in summary["runs"]:
        assert run["tokens"] > 0 and run["error"] is None and run["attempts"] == 1
        assert Path(run["bundle_dir"]).parent == batch_dir / "runs"
    manifest = json.loads((batch_dir / "manifest.json").read_text())
    assert [r["id"] for r in manifest["runs"]] == [i.run_id for i in plan.items]
    assert manifest["chat_model"] == {"object": "FakeChatModel"}
    # Progress: never more than 3 running, ends with all 8 done.
    assert max(p.running for p in seen) <= 3
    assert seen[-1].done == 8 and seen[-1].tokens == summary["tokens"]
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    # Running the batch again does nothing: every run is done.
    again = FakeChatModel()
    rerun = await arun_batch(
        plan, out_dir=tmp_path / "out", state_dir=tmp_path / "state", chat_model=again
    )
    assert rerun.status == "done" and not again.calls


async def test_resume_finishes_what_a_batch_left(tmp_path: Path, corpus_dir: Path) -> None:
    plan = load_batch(write_batch(tmp_path, personas=2))
    refs = await reference_runs(plan, tmp_path / "ref")
    model = ModelRef("personagen.llm.fake:FakeChatModel")
    # A budget too small for any run: every run stops early, checkpointed.
    stopped = await arun_batch(
        plan,
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
        chat_model=model,
        max_tokens=1500,
    )
    assert stopped.status == "incomplete"
    assert {r["status"] for r in stopped.runs} == {"budget_exhausted"}
    # Resume by id: settings come from the manifest, the budget is overridden.
    resumed = await aresume_batch("homes", out_dir=tmp_path / "out", max_tokens=10**9)
    assert resumed.status == "done"
    assert_matches_references(resumed.runs, refs)
    assert all(r["attempts"] == 2 for r in resumed.runs)
    assert json.loads((tmp_path / "out/homes/batch.json").read_text())["resumed"] is True


async def test_resume_unknown_batch(tmp_path: Path) -> None:
    with pytest.raises(BatchError, match="no batch 'nope'"):
        await aresume_batch("nope", out_dir=tmp_path)


async def test_a_failing_run_does_not_stop_the_batch(tmp_path: Path, corpus_dir: Path) -> None:
    plan = load_batch(write_batch(tmp_path, personas=2))
    broken = plan.items[1].spec.model_copy(
        update={"data": [plan.items[1].spec.data[0].model_copy(update={"path": "docs/none.md"})]}
    )
    items = [plan.items[0], plan.items[1].__class__(plan.items[1].run_id, "broken", broken)]
    report = await arun_batch(
        BatchPlan("mixed", items),
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
        chat_model=FakeChatModel(),
    )
    statuses = {r["label"]: (r["status"], r["error"]) for r in report.runs}
    assert statuses[items[0].label][0] == "done"
    status, error = statuses["broken"]
    assert status == "failed" and "none.md" in error
    assert report.status == "incomplete"


def test_ray_backend_refuses_sqlite_and_model_objects(tmp_path: Path) -> None:
    plan = BatchPlan("empty", [])
    with pytest.raises(BatchError, match="needs Postgres checkpoints"):
        asyncio.run(arun_batch(plan, backend="ray", out_dir=tmp_path, state_dir=tmp_path))
    with pytest.raises(BatchError, match="cannot ship a chat model object"):
        asyncio.run(
            arun_batch(
                plan,
                backend="ray",
                out_dir=tmp_path,
                checkpoint="postgresql://u@127.0.0.1:1/db",
                chat_model=FakeChatModel(),
            )
        )
    with pytest.raises(BatchError, match="unknown backend"):
        asyncio.run(arun_batch(plan, backend="spark", out_dir=tmp_path))  # type: ignore[arg-type]


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_run_status_resume(tmp_path: Path, corpus_dir: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERSONAGEN_BATCH_DB_URL", raising=False)
    batch = write_batch(tmp_path, personas=2)
    runner = CliRunner()
    ran = runner.invoke(
        batch_app, ["run", str(batch), "--out", "out", "--concurrency", "2"], env={"COLUMNS": "200"}
    )
    assert ran.exit_code == 0, ran.output
    assert "done: 4/4 done" in ran.output
    shown = runner.invoke(batch_app, ["status", "homes", "--out", "out", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["counts"]["done"] == 4
    resumed = runner.invoke(batch_app, ["resume", "homes", "--out", "out", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert "done: 4/4 done" in resumed.output
    # One SQLite checkpoint file per run, in the state folder.
    files = sorted(p.name for p in (tmp_path / ".personagen" / "checkpoints").glob("*.sqlite"))
    assert len(files) == 4 and all(f.startswith("homes-") for f in files)


def test_cli_errors_are_named(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("personas: [A buyer]\n", encoding="utf-8")
    result = runner.invoke(batch_app, ["run", str(bad)])
    assert isinstance(result.exception, SpecError)
    assert "bad.yaml" in str(result.exception) and "'data' is missing" in str(result.exception)
    missing = runner.invoke(batch_app, ["resume", "nope", "--out", str(tmp_path)])
    assert isinstance(missing.exception, BatchError)
    wrong = runner.invoke(
        batch_app,
        ["run", str(write_batch(tmp_path, personas=1)), "--backend", "ray"],
        env={"PERSONAGEN_BATCH_DB_URL": ""},
    )
    assert isinstance(wrong.exception, BatchError), wrong.output
