"""Kill -9 in the middle of the answering fan-out, resume in a new process, lose nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRIVER = Path(__file__).with_name("_driver.py")


def _calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(x) for x in log.read_text().splitlines() if x.strip()]


def _driver(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def _finished_answer_tasks(state_dir: Path, run_id: str) -> tuple[int, int]:
    from personagen.graph.builder import build_graph
    from personagen.graph.checkpoint import open_checkpointer

    async def inspect() -> tuple[int, int]:
        async with open_checkpointer(state_dir / "checkpoints.sqlite") as saver:
            graph = build_graph().compile(checkpointer=saver)
            snapshot = await graph.aget_state({"configurable": {"thread_id": run_id}})
        answers = [t for t in snapshot.tasks if t.name == "answer"]
        return sum(1 for t in answers if t.result is not None), len(answers)

    return asyncio.run(inspect())


def _qa(bundle: str) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (Path(bundle) / "qa.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: r["id"])


def test_kill_during_fanout_then_resume(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(
        goal={"name": "qa", "params": {"num_questions": 6}},
        run={"max_concurrency": 2, "max_iterations": 1, "cache": False},
    )
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))

    # The uninterrupted reference run.
    ref_log = tmp_path / "ref.log"
    ref = _driver("run", str(tmp_path / "ref"), "ref", str(spec_path), str(ref_log), "0")
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    reference = json.loads(out.strip().splitlines()[-1])
    total_answers = sum(1 for c in _calls(ref_log) if c["schema"] == "AnswerOut")
    assert total_answers == 6

    # Start, then kill -9 once some (not all) answers are under way.
    state = tmp_path / "killed"
    log = tmp_path / "first.log"
    first = _driver("run", str(state), "victim", str(spec_path), str(log), "0.4")
    deadline = time.monotonic() + 120
    while sum(1 for c in _calls(log) if c["schema"] == "AnswerOut") < 4:
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert time.monotonic() < deadline, "the run never reached the answering fan-out"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    finished, sent = _finished_answer_tasks(state, "victim")
    assert sent == 6 and 0 < finished < 6, (finished, sent)

    # Resume in a new process: only the unfinished work is redone.
    resumed_log = tmp_path / "resumed.log"
    second = _driver("resume", str(state), "victim", str(spec_path), str(resumed_log), "0")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "done"
    resumed = _calls(resumed_log)
    assert not [c for c in resumed if c["schema"] == "QuestionsOut"]  # generation not redone
    assert sum(1 for c in resumed if c["schema"] == "AnswerOut") == 6 - finished
    assert _qa(result["bundle"]) == _qa(reference["bundle"])
