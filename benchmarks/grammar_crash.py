"""Does the embedded model's answer step survive ugly text? Old code (from git) vs this tree.

Each case runs one answer-step call (`extractive_answer_schema` over a context, then
`EmbeddedChatModel.with_structured_output(...).invoke`) in a child process and prints how the
child ended: `ok` with the picked quotes, a per-item `error`, or the signal that killed it.
The old code is `git archive`d from `--before` into a temporary directory, so the working
tree is never touched.

    python benchmarks/grammar_crash.py [--before e93fa27]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    # The text of the crash report (issue 15).
    "reported": (
        'Check hasattr(sys, "real_prefix") to detect a virtualenv. '
        "A Windows path such as C:\\new\\table needs raw strings. "
        'The string "\\\\" is a single backslash.'
    ),
    "plain": "Closing costs add up to 2 to 5 percent. The lender checks your documents.",
    # A character SmolLM2 has no tokens for (lead byte 0xF1), inside a quoted sentence.
    "astral": "The rare character \U000493bb appears here. The lender checks your documents.",
    "controls": 'Tabs\tand "quotes" and a bell \x07 here. Braces {} and [brackets] too.',
}

CHILD = r"""
import json, sys
from personagen.errors import PersonaGenError
from personagen.llm.embedded import EmbeddedChatModel
from personagen.prompts.schemas import extractive_answer_schema
context = json.loads(sys.argv[1])
schema = extractive_answer_schema([context])
model = EmbeddedChatModel(max_tokens=320, temperature=0.0, seed=0)
try:
    out = model.with_structured_output(schema).invoke(
        f"Context: {context}\nQuestion: What does the text say?\nJSON:\n")
    print(json.dumps({"outcome": "ok", "quotes": out.quotes}))
except PersonaGenError as exc:
    print(json.dumps({"outcome": "error", "error": f"{type(exc).__name__}: {exc}"[:160]}))
"""


def run_case(src: Path, context: str) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(context)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tempfile.gettempdir(),
    )
    took = time.perf_counter() - started
    if done.returncode < 0:
        return f"CRASH exit {128 - done.returncode} ({signal.Signals(-done.returncode).name})", took
    if done.returncode != 0:
        return f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}", took
    result = json.loads(done.stdout.strip().splitlines()[-1])
    detail = result.get("quotes", result.get("error"))
    return f"{result['outcome']}: {detail!r}"[:150], took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="e93fa27", help="git revision of the old code")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as old_root:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before, "src"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", old_root], input=archive, check=True)
        trees = {f"before ({args.before})": Path(old_root) / "src", "after": ROOT / "src"}
        for label, src in trees.items():
            print(f"== {label}")
            for name, context in CASES.items():
                outcome, took = run_case(src, context)
                print(f"  {name:<9} {took:5.1f} s  {outcome}")


if __name__ == "__main__":
    main()
