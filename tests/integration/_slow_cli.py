"""`personagen` CLI whose fake provider sleeps per call (`PERSONAGEN_FAKE_LATENCY` seconds).

For the kill and Ctrl-C tests: a run that takes long enough to be stopped part-way, driven
through the real command line (arguments, run records, exit codes, the terminal).
"""

from __future__ import annotations

import os

from personagen.llm import factory
from personagen.llm.fake import FakeChatModel


class SlowFakeChatModel(FakeChatModel):
    """The fake model with the latency taken from the environment."""

    latency: float = float(os.environ.get("PERSONAGEN_FAKE_LATENCY", "0.1"))


factory.FakeChatModel = SlowFakeChatModel  # type: ignore[misc]

if __name__ == "__main__":
    from personagen.cli import main

    main()
