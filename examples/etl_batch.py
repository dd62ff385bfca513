"""An ETL-style batch: personalize many files for several personas and collect the bundles.

    python examples/etl_batch.py --data examples/home-buying/docs \
        --personas examples/personas.yaml --out out/etl --provider fake

One run per (persona, file), a bounded number at a time in one process; each run is
checkpointed, so re-running the script resumes what a crash left unfinished and skips what is
done. For batches across machines see `personagen batch`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from personagen.api import RunResult, aresume, arun
from personagen.errors import RunNotFound


def run_id_for(persona: dict[str, Any], path: Path) -> str:
    """A stable run id per (persona, file), so a rerun resumes instead of starting over."""
    key = json.dumps([persona.get("name"), persona.get("description"), str(path)], sort_keys=True)
    return "etl-" + hashlib.sha1(key.encode()).hexdigest()[:12]


async def personalize(
    files: list[Path],
    personas: list[dict[str, Any]],
    *,
    out_dir: Path,
    state_dir: Path,
    provider: str = "embedded",
    concurrency: int = 2,
    goal: dict[str, Any] | None = None,
    chat_model: Any = None,
) -> list[dict[str, Any]]:
    """Run every (persona, file) pair; return one summary row per run."""
    gate = asyncio.Semaphore(concurrency)

    async def one(persona: dict[str, Any], path: Path) -> dict[str, Any]:
        run_id = run_id_for(persona, path)
        spec = {
            "persona": persona,
            "goal": goal or {"name": "qa", "params": {"num_questions": 3}},
            "data": [{"path": str(path)}],
            "run": {"max_iterations": 2},
            "llm": {"provider": provider},
        }
        kwargs = {"out_dir": out_dir, "state_dir": state_dir, "chat_model": chat_model}
        async with gate:
            try:
                result: RunResult = await aresume(run_id, **kwargs)
            except RunNotFound:
                result = await arun(spec, run_id=run_id, **kwargs)
        return {
            "run_id": run_id,
            "persona": persona.get("name"),
            "file": str(path),
            "status": result.status,
            "accepted": len(result.accepted),
            "bundle_dir": str(result.bundle_dir) if result.bundle_dir else None,
        }

    return await asyncio.gather(*(one(p, f) for p in personas for f in files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="A directory of documents.")
    parser.add_argument("--personas", type=Path, required=True, help="YAML list of personas.")
    parser.add_argument("--out", type=Path, default=Path("out/etl"))
    parser.add_argument("--provider", default="embedded")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    files = sorted(p for p in args.data.rglob("*") if p.is_file() and not p.name.startswith("."))
    personas = yaml.safe_load(args.personas.read_text(encoding="utf-8"))
    rows = asyncio.run(
        personalize(
            files,
            personas,
            out_dir=args.out,
            state_dir=args.out / ".state",
            provider=args.provider,
            concurrency=args.concurrency,
        )
    )
    (args.out / "batch.json").write_text(json.dumps(rows, indent=2))
    for row in rows:
        print(f"{row['status']:>10}  {row['persona']:<12} {row['file']}  -> {row['bundle_dir']}")


if __name__ == "__main__":
    main()
