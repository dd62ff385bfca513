"""Subprocess driver for the kill/resume test: runs or resumes with a slow, logging fake model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import personagen
from personagen.llm.fake import FakeChatModel, FakeRequest


def main() -> None:
    action, state_dir, run_id, spec_path, log_path = sys.argv[1:6]
    latency = float(sys.argv[6]) if len(sys.argv) > 6 else 0.3
    log = Path(log_path).open("a", encoding="utf-8")

    def record(request: FakeRequest) -> None:
        question = request.tag("question")
        log.write(
            json.dumps(
                {"schema": request.schema_name, "question": question[-1] if question else None}
            )
            + "\n"
        )
        log.flush()
        return None

    model = FakeChatModel(latency=latency, faults=record)
    kwargs = {"chat_model": model, "state_dir": state_dir, "out_dir": Path(state_dir) / "out"}
    if action == "run":
        spec = json.loads(Path(spec_path).read_text())
        result = personagen.run(spec, run_id=run_id, **kwargs)
    else:
        result = personagen.resume(run_id, **kwargs)
    print(json.dumps({"status": result.status, "bundle": str(result.bundle_dir)}))


if __name__ == "__main__":
    main()
