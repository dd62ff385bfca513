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


# --- Through the command line: random kills, Ctrl-C in a terminal, stale runs --------------

KILL_TRIALS = int(os.environ.get("PERSONAGEN_KILL_TRIALS", "3"))
"""Random kills per test run (benchmarks/kill_resume.py runs many more and prints the count)."""


@pytest.fixture
def cli_spec(tmp_path: Path, make_spec: Any) -> Path:
    spec = make_spec(
        goal={"name": "qa", "params": {"num_questions": 4}},
        run={"max_concurrency": 2, "max_iterations": 1},
    )
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_random_kills_then_resume_with_no_flags(tmp_path: Path, cli_spec: Path) -> None:
    import random

    from ._kill_trials import kill_trial, reference

    expected, seconds = reference(tmp_path, cli_spec, latency=0.05)
    assert expected
    rng = random.Random(16)
    trials = [
        kill_trial(tmp_path, cli_spec, 0.05, rng.uniform(0.2, seconds), expected)
        for _ in range(KILL_TRIALS)
    ]
    bad = [t for t in trials if not t.same_pairs]
    assert not bad, bad
    # Kills after the id was shown were resumed (`personagen resume victim`, no flag).
    assert all(t.resumed for t in trials if t.id_printed and t.detail != "finished before")


def test_killed_run_is_listed_interrupted(tmp_path: Path, cli_spec: Path) -> None:
    from ._kill_trials import SLOW_CLI, cli

    proc = subprocess.Popen(
        [sys.executable, str(SLOW_CLI), "run", str(cli_spec), "--run-id", "gone", "-q"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PERSONAGEN_FAKE_LATENCY": "0.5"},
    )
    assert proc.stderr is not None
    while "personagen resume gone" not in proc.stderr.readline():  # under way once shown
        assert proc.poll() is None
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    listing = cli("runs", "list", "--json", cwd=tmp_path, latency=0)
    assert listing.returncode == 0, listing.stderr
    (run,) = json.loads(listing.stdout)
    assert run["id"] == "gone" and run["status"] == "interrupted", run
    assert "ended without finishing" in run["reason"], run


def test_ctrl_c_in_a_terminal_exits_fast_and_resumes(tmp_path: Path, cli_spec: Path) -> None:
    import pty
    import select

    from ._kill_trials import SLOW_CLI, cli, qa_rows

    out = tmp_path / "bundles"
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a pseudo-terminal, as a user runs it
        os.chdir(tmp_path)
        os.environ["PERSONAGEN_FAKE_LATENCY"] = "0.3"
        args = ["run", str(cli_spec), "--out", str(out), "--run-id", "cc"]
        os.execv(sys.executable, [sys.executable, str(SLOW_CLI), *args])
    screen = b""
    sent_at: float | None = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        if sent_at is None and b"answer" in screen.split(b"resume with", 1)[-1]:
            os.write(fd, b"\x03")  # Ctrl-C, delivered by the terminal as SIGINT
            sent_at = time.monotonic()
    _, status = os.waitpid(pid, 0)
    assert sent_at is not None, screen.decode(errors="replace")[-2000:]
    took = time.monotonic() - sent_at
    text = screen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 130, text[-2000:]
    assert took < 3.0, took
    assert "interrupted: resume with personagen resume cc" in text
    listed = cli("runs", "show", "cc", "--json", cwd=tmp_path, latency=0)
    shown = json.loads(listed.stdout)
    assert shown["status"] == "interrupted" and shown["total_tokens"] > 0, listed.stdout

    resumed = cli("resume", "cc", cwd=tmp_path, latency=0.0)
    assert resumed.returncode == 0, resumed.stderr
    assert qa_rows(out / "cc")
