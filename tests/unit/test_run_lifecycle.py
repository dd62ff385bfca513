"""Run lifecycle: resume writes where the run wrote, resumable from its id, stale runs end.

Issue 16 (1, 2) and issue 15 (1): a run records its spec and out dir before its id is shown,
`resume` finds them, and a run whose process died is marked `interrupted`, not `running`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import personagen
from personagen.api import aresume, arun, register_run
from personagen.errors import RunNotFound
from personagen.specfile import parse_spec
from personagen.store.run_records import (
    RunBusy,
    RunLock,
    process_state,
    read_record,
    record_path,
)
from personagen.store.runs import RunStore


def _db(state: Path) -> str:
    return f"sqlite:///{state / 'runs.sqlite'}"


def test_resume_of_a_run_killed_before_its_first_checkpoint(tmp_path: Path, make_spec: Any) -> None:
    spec = parse_spec(make_spec(run={"max_iterations": 1}))
    state, out = tmp_path / "state", tmp_path / "elsewhere" / "bundles"
    # What the CLI does before it prints the id; then the process "dies".
    register_run("early", spec, out_dir=out, state_dir=state)
    record = read_record(state, "early")
    assert record is not None and Path(record.out_dir) == out.resolve()

    result = personagen.resume("early", state_dir=state)  # no out dir given

    assert result.status == "done"
    assert result.bundle_dir == out.resolve() / "early"
    assert (result.bundle_dir / "qa.jsonl").is_file()


def test_resume_writes_where_the_run_was_writing(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(run={"max_iterations": 1})
    state, out = tmp_path / "state", tmp_path / "my-out"

    async def scenario() -> tuple[Any, Any]:
        from personagen.llm.fake import FakeChatModel

        slow = FakeChatModel(latency=0.2)
        first = await arun(
            spec, run_id="r1", out_dir=out, state_dir=state, chat_model=slow, time_limit=0.3
        )
        second = await aresume("r1", state_dir=state)
        return first, second

    first, second = asyncio.run(scenario())
    assert first.status == "interrupted" and first.bundle_dir is None
    assert second.status == "done"
    assert second.bundle_dir == out.resolve() / "r1"
    assert not (Path.cwd() / "out" / "r1").exists()
    # --out still wins when given.
    third = personagen.resume("r1", state_dir=state, out_dir=tmp_path / "other")
    assert third.status == "done"


def test_unknown_run_names_both_places_looked(tmp_path: Path) -> None:
    with pytest.raises(RunNotFound, match="no checkpoint for run 'ghost'.*no run record"):
        personagen.resume("ghost", state_dir=tmp_path)


def test_record_of_an_odd_run_id_is_a_safe_file(tmp_path: Path, make_spec: Any) -> None:
    spec = parse_spec(make_spec())
    register_run("../../etc/passwd", spec, state_dir=tmp_path)
    path = record_path(tmp_path, "../../etc/passwd")
    assert path.parent == tmp_path / "runs" and path.is_file()
    assert read_record(tmp_path, "../../etc/passwd") is not None


_HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from personagen.store.run_records import RunLock, this_host
    from personagen.store.runs import RunStore
    from personagen.specfile import parse_spec
    state, db, run_id = sys.argv[1:4]
    spec = parse_spec({"persona": "A nurse", "data": [{"text": "Some text here."}]})
    lock = RunLock(state, run_id)
    lock.acquire()
    store = RunStore(db)
    store.record_start(run_id, spec, owner=(this_host(), os.getpid()), state_dir=state)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def _holder(state: Path, run_id: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(state), _db(state), run_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_killed_runs_process_marks_it_interrupted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    alive, victim = _holder(state, "alive"), _holder(state, "victim")
    try:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert process_state("victim", state, None, None) == "dead"
        assert process_state("alive", state, None, None) == "alive"
        with RunStore(_db(state)) as store:
            assert store.mark_stale_runs() == ["victim"]
            runs = {r.id: r for r in store.list_runs()}
        assert runs["victim"].status == "interrupted"
        assert "personagen resume victim" in (runs["victim"].reason or "")
        assert runs["alive"].status == "running"
        # A second process cannot drive a run another live process holds.
        with pytest.raises(RunBusy, match="'alive' is being driven by another process"):
            RunLock(state, "alive").acquire(wait=0.2)
    finally:
        alive.kill()
        alive.wait(timeout=10)


def test_runs_list_marks_stale_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    victim = _holder(state, "gone")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    listing = subprocess.run(
        [sys.executable, "-m", "personagen.cli", "runs", "list", "--db", _db(state)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "gone" in line)
    assert "interrupted" in row and "running" not in row


def test_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    outer, inner = RunLock(tmp_path, "x"), RunLock(tmp_path, "x")
    outer.acquire()
    inner.acquire(wait=0)
    inner.release()
    assert process_state("x", tmp_path, None, None) == "alive"
    outer.release()
    started = time.monotonic()
    assert process_state("x", tmp_path, None, None) == "dead"
    assert time.monotonic() - started < 1


def test_a_store_made_by_an_older_version_gets_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "runs.sqlite"
    with RunStore(f"sqlite:///{path}") as store:
        store.setup()
    with sqlite3.connect(path) as db:  # the schema before runs recorded their process
        for column in ("host", "pid", "state_dir", "out_dir"):
            db.execute(f"ALTER TABLE personagen_runs DROP COLUMN {column}")
    spec = parse_spec({"persona": "A nurse", "data": [{"text": "Some text here."}]})
    with RunStore(f"sqlite:///{path}") as store:
        store.record_start("old", spec, owner=("h", 1), state_dir=tmp_path, out_dir=tmp_path)
        assert store.list_runs()[0].id == "old"
