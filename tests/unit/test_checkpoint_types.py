"""Every state type survives a checkpoint round trip (nothing blocked or lost on resume)."""

from __future__ import annotations

import importlib
import pkgutil

import personagen.state as state_package
from personagen.graph.checkpoint import serializer


def test_every_state_model_is_allowed() -> None:
    serde = serializer()
    from pydantic import BaseModel

    for info in pkgutil.iter_modules(state_package.__path__):
        module = importlib.import_module(f"personagen.state.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseModel)
                and obj.__module__ == module.__name__
            ):
                assert (obj.__module__, obj.__name__) in serde._allowed_msgpack_modules, obj
