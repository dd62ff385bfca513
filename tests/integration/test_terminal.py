"""`personagen run` on a terminal (a pseudo-terminal here): review prompts inline, with the
text to edit already typed in (issue 16, 5)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_review_is_asked_inline_with_the_text_prefilled(tmp_path: Path, make_spec: Any) -> None:
    import pty

    spec = make_spec(run={"max_iterations": 1, "review": ["questions"]})
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(tmp_path)
        argv = ["-m", "personagen.cli", "run", str(path), "--out", str(out), "--run-id", "rv"]
        os.execv(sys.executable, [sys.executable, *argv])
    screen, answered, edited, deadline = b"", 0, 0, time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
        shown = ANSI.sub("", screen.decode(errors="replace"))
        if shown.count("[a/e/r] (a):") > answered:
            os.write(fd, b"e\r" if answered == 0 else b"\r")
            answered += 1
        if shown.count("question: ") > edited:
            os.write(fd, b" (edited)\r")  # typed after the prefilled original
            edited += 1
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    text = screen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) in (0, 3), text[-3000:]
    assert answered >= 2, text[-3000:]
    rows = [
        json.loads(line)
        for name in ("qa.jsonl", "rejected.jsonl")
        if (out / "rv" / name).is_file()
        for line in (out / "rv" / name).read_text().splitlines()
    ]
    edited = [r for r in rows if r["question"].endswith("(edited)")]
    assert len(edited) == 1, [r["question"] for r in rows]
    # The original question was typed in for the reviewer: the edit extends it.
    assert len(edited[0]["question"]) > len(" (edited)") + 10
