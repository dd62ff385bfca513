"""Kill trials through the real CLI: SIGKILL a run at a random moment, resume it, compare.

Used by `test_kill_resume.py` (a few trials) and `benchmarks/kill_resume.py` (many). Each
trial works in a directory of its own with the default state dir (`.personagen` in the
current directory) and an `--out` elsewhere, so `personagen resume RUN_ID` needs no flag.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLOW_CLI = Path(__file__).with_name("_slow_cli.py")
RUN_ID = "victim"


def cli(
    *args: str, cwd: Path, latency: float, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the slow-fake CLI to its end."""
    return subprocess.run(
        [sys.executable, str(SLOW_CLI), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "PERSONAGEN_FAKE_LATENCY": str(latency)},
    )


def qa_rows(bundle: Path) -> list[dict[str, Any]]:
    """The bundle's accepted pairs, in id order."""
    rows = [json.loads(x) for x in (bundle / "qa.jsonl").read_text().splitlines() if x.strip()]
    return sorted(rows, key=lambda r: r["id"])


@dataclass
class Trial:
    """What one kill trial saw."""

    killed_at: float
    id_printed: bool
    resumed: bool
    same_pairs: bool
    detail: str = ""


def reference(root: Path, spec: Path, latency: float) -> tuple[list[dict[str, Any]], float]:
    """The uninterrupted run's pairs and its wall time."""
    work = root / "reference"
    work.mkdir(parents=True)
    started = time.monotonic()
    done = cli(
        "run",
        str(spec),
        "--out",
        str(work / "out"),
        "--run-id",
        "ref",
        "-q",
        cwd=work,
        latency=latency,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise AssertionError(f"reference run failed: {done.stderr}")
    return qa_rows(work / "out" / "ref"), seconds


def kill_trial(
    root: Path, spec: Path, latency: float, at: float, expected: list[dict[str, Any]]
) -> Trial:
    """Start the run, SIGKILL it `at` seconds in, resume it with no flag, compare pairs."""
    work = root / f"trial-{at:.2f}-{random.randrange(1 << 30)}"
    out = root / "bundles" / work.name  # the original --out, outside the working dir
    work.mkdir(parents=True)
    env = {**os.environ, "PERSONAGEN_FAKE_LATENCY": str(latency)}
    log = (work / "first.err").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(SLOW_CLI),
            "run",
            str(spec),
            "--out",
            str(out),
            "--run-id",
            RUN_ID,
            "-q",
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    time.sleep(at)
    finished_first = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    log.close()
    printed = "personagen resume victim" in (work / "first.err").read_text()
    if finished_first and proc.returncode == 0:
        return Trial(at, printed, False, qa_rows(out / RUN_ID) == expected, "finished before")
    if printed:
        second = cli("resume", RUN_ID, cwd=work, latency=latency)  # no flags at all
    else:  # no id was shown: the user can only run the command again
        second = cli(
            "run", str(spec), "--out", str(out), "--run-id", RUN_ID, "-q", cwd=work, latency=latency
        )
    if second.returncode != 0:
        return Trial(at, printed, False, False, second.stderr.strip()[-500:])
    bundle = out / RUN_ID
    same = (bundle / "qa.jsonl").is_file() and qa_rows(bundle) == expected
    return Trial(at, printed, printed, same, "" if same else f"pairs differ in {bundle}")
