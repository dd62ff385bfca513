"""PersonaGen: personalize any data to a persona with LLMs.

The public API is imported lazily so that `import personagen` stays cheap (no LangGraph,
Ragas or model import until a run needs one).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "RunSpec": "personagen.state.spec",
    "Persona": "personagen.state.spec",
    "Goal": "personagen.state.spec",
    "DataSource": "personagen.state.spec",
    "Constraints": "personagen.state.spec",
    "load_spec": "personagen.specfile",
    "run": "personagen.api",
    "arun": "personagen.api",
    "resume": "personagen.api",
    "astream": "personagen.api",
    "HookItem": "personagen.state.hooks",
    "HookContext": "personagen.state.hooks",
    "ReviewDecision": "personagen.state.review",
    "StopRun": "personagen.errors",
    "aresume": "personagen.api",
    "RunResult": "personagen.api",
    "build_graph": "personagen.graph.builder",
    "export": "personagen.store.export",
}

if TYPE_CHECKING:  # pragma: no cover
    from personagen.api import RunResult, aresume, arun, resume, run  # noqa: F401
    from personagen.graph.builder import build_graph  # noqa: F401
    from personagen.specfile import load_spec  # noqa: F401
    from personagen.state.spec import Constraints, DataSource, Goal, Persona, RunSpec  # noqa: F401
    from personagen.store.export import export  # noqa: F401


def __getattr__(name: str) -> Any:
    """Import public names on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'personagen' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = ["__version__", *_LAZY]
