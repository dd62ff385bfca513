"""Programmable hooks at every point, plugins, and composition (subgraph, async, streaming)."""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

import personagen
from personagen.api import aresume, arun, astream
from personagen.errors import PluginError, SpecError, StopRun
from personagen.llm.fake import FakeChatModel, FakeRequest
from personagen.state.hooks import HookItem


def _kw(tmp_path: Path) -> dict[str, Any]:
    return {"out_dir": tmp_path / "out", "state_dir": tmp_path / "state"}


def _rows(result: Any, name: str = "qa.jsonl") -> list[dict[str, Any]]:
    return [json.loads(x) for x in (result.bundle_dir / name).read_text().splitlines()]


def _metadata(result: Any) -> dict[str, Any]:
    return json.loads((result.bundle_dir / "metadata.json").read_text())


async def test_after_questions_filter_edit_add(tmp_path: Path, make_spec: Any) -> None:
    seen: list[int] = []

    def hook(items: list[HookItem], context: Any) -> list[HookItem]:
        seen.append(len(items))
        assert context.hook == "after_questions" and context.persona_name == "Maya"
        first, second, *_ = items
        first.question = "How much deposit do most lenders ask for?"
        return [first, HookItem(question="What does a property survey cost?")]  # drop the rest

    model = FakeChatModel()
    spec = make_spec(
        goal={"name": "qa", "params": {"num_questions": 3}, "baseline": {"relevance": 0.0}}
    )
    result = await arun(spec, chat_model=model, hooks={"after_questions": hook}, **_kw(tmp_path))
    assert seen == [3]
    questions = {p.question: p for p in result.pairs.values() if p.status != "rejected"}
    assert set(questions) == {
        "How much deposit do most lenders ask for?",
        "What does a property survey cost?",
    }
    assert questions["What does a property survey cost?"].origin == "hook"
    removed = [p for p in result.pairs.values() if p.status == "rejected"]
    assert len(removed) == 2 and all(
        "removed by hook after_questions" in p.feedback[0] for p in removed
    )
    assert len(model.calls_for("AnswerOut")) == 2  # removed questions were never answered
    log = _metadata(result)["hooks"]
    assert len(log) == 1 and len(log[0]["removed"]) == 2 and len(log[0]["added"]) == 1
    assert len(log[0]["edited"]) == 1


async def test_after_answers_and_before_output_edit(tmp_path: Path, make_spec: Any) -> None:
    def shout(items: list[HookItem], context: Any) -> list[HookItem]:
        for item in items:
            item.answer = (item.answer or "") + " (checked)"
        return items

    def only_two(items: list[HookItem], context: Any) -> list[HookItem]:
        return items[:2]

    result = await arun(
        make_spec(),
        chat_model=FakeChatModel(),
        hooks={"after_answers": shout, "before_output": only_two},
        **_kw(tmp_path),
    )
    rows = _rows(result)
    assert len(rows) == 2 and all(r["answer"].endswith("(checked)") for r in rows)
    for row in rows:  # re-grounded: the source sentences are spans, the hook's words are not
        assert row["spans"] and all(s["text"] in row["answer"] for s in row["spans"])
        assert all("(checked)" not in s["text"] for s in row["spans"])
    assert len(_rows(result, "rejected.jsonl")) == 1


async def test_after_evaluation_and_persona_hooks(tmp_path: Path, make_spec: Any) -> None:
    def expert(persona: Any, context: Any) -> Any:
        return persona.model_copy(update={"expertise": "expert"})

    def reject_all_but_one(items: list[HookItem], context: Any) -> list[HookItem]:
        return items[:1]

    result = await arun(
        make_spec(run={"max_iterations": 1}),
        chat_model=FakeChatModel(),
        hooks={"after_persona": expert, "after_evaluation": reject_all_but_one},
        **_kw(tmp_path),
    )
    assert json.loads((result.bundle_dir / "persona.json").read_text())["expertise"] == "expert"
    assert len(result.accepted) == 1


async def test_hook_from_spec_dotted_path(tmp_path: Path, make_spec: Any) -> None:
    def ask_costs(request: Any) -> dict[str, Any]:
        from personagen.llm.fake import default_response

        out = default_response(request)
        out["questions"].append({"question": "What costs should I budget for?"})
        return out

    spec = make_spec(hooks={"after_questions": "tests.plugins_pkg:drop_costs"})
    result = await arun(
        spec, chat_model=FakeChatModel(responders={"QuestionsOut": ask_costs}), **_kw(tmp_path)
    )
    assert all("cost" not in p.question.lower() for p in result.accepted)


async def test_failing_hook_names_itself_and_run_resumes(tmp_path: Path, make_spec: Any) -> None:
    spec = make_spec(hooks={"after_answers": "tests.plugins_pkg:broken"})
    with pytest.raises(
        PluginError,
        match=r"hook after_answers \(tests.plugins_pkg:broken\) failed.*database unreachable",
    ):
        await arun(spec, chat_model=FakeChatModel(), run_id="h", **_kw(tmp_path))
    model = FakeChatModel()
    # Resume with the hook fixed (a Python hook replaces nothing in the checkpointed spec, so
    # the broken one still runs): the spec's hook fails again, naming itself.
    with pytest.raises(PluginError, match="database unreachable"):
        await aresume("h", chat_model=model, **_kw(tmp_path))
    assert model.calls_for("AnswerOut") == []  # finished answers were not redone


async def test_stop_run_from_a_hook(tmp_path: Path, make_spec: Any) -> None:
    calls = {"n": 0}

    def stop_once(items: list[HookItem], context: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StopRun("budget review needed")
        return None

    first = await arun(
        make_spec(),
        chat_model=FakeChatModel(),
        run_id="s",
        hooks={"after_questions": stop_once},
        **_kw(tmp_path),
    )
    assert first.status == "stopped" and first.reason == "budget review needed"
    done = await aresume(
        "s", chat_model=FakeChatModel(), hooks={"after_questions": stop_once}, **_kw(tmp_path)
    )
    assert done.status == "done"


async def test_plugin_metric_in_baseline_and_plugin_constraint(
    tmp_path: Path, make_spec: Any
) -> None:
    spec = make_spec(
        goal={
            "name": "qa",
            "params": {"num_questions": 3},
            "metrics": ["tests.plugins_pkg:brevity"],
            "baseline": {"tests.plugins_pkg:brevity": 1.0},
        },
        constraints={
            "filter_out": [{"plugin": "tests.plugins_pkg:mentions", "options": {"word": "survey"}}]
        },
        run={"max_iterations": 1},
    )
    result = await arun(spec, chat_model=FakeChatModel(), **_kw(tmp_path))
    for pair in result.accepted:
        assert pair.scores["tests.plugins_pkg:brevity"] == 1.0
        assert "survey" not in pair.answer.lower()
    rejected = _rows(result, "rejected.jsonl")
    assert any("mentions 'survey'" in " ".join(r["reasons"]) for r in rejected) or any(
        "brevity" in " ".join(r["reasons"]) for r in rejected
    )
    kinds = {v["kind"] for r in rejected for v in r["violations"]}
    assert (
        not rejected
        or kinds <= {"plugin"}
        or any("brevity" in " ".join(r["reasons"]) for r in rejected)
    )


def test_unknown_plugin_is_a_clear_spec_error(make_spec: Any) -> None:
    from personagen.prompts.library import resolve_goal
    from personagen.specfile import parse_spec

    spec = parse_spec(make_spec(goal={"name": "qa", "metrics": ["no_such_pkg.mod:fn"]}))
    with pytest.raises(SpecError, match="no_such_pkg.mod:fn.*cannot import"):
        resolve_goal(spec.goal)
    with pytest.raises(SpecError, match="no entry point"):
        resolve_goal(parse_spec(make_spec(goal={"name": "qa", "metrics": ["unregistered"]})).goal)


async def test_unknown_hook_point(tmp_path: Path, make_spec: Any) -> None:
    with pytest.raises(SpecError, match="unknown hook point 'after_lunch'"):
        await arun(
            make_spec(), chat_model=FakeChatModel(), hooks={"after_lunch": print}, **_kw(tmp_path)
        )


async def test_streaming_api_yields_progress_then_result(tmp_path: Path, make_spec: Any) -> None:
    events = [e async for e in astream(make_spec(), chat_model=FakeChatModel(), **_kw(tmp_path))]
    stages = [e["stage"] for e in events if e["type"] == "stage" and e["event"] == "start"]
    # No hook and no review configured: their steps are skipped, not run as no-ops.
    assert stages[:3] == ["compose_persona", "resolve_goal", "load_data"]
    assert not [s for s in stages if s.startswith(("hooks_", "review_"))]
    assert sum(1 for e in events if e["type"] == "update" and e["node"] == "answer") == 3
    tokens = [e["total"] for e in events if e["type"] == "tokens"]
    assert tokens == sorted(tokens) and tokens[-1] > 0
    assert events[-1]["type"] == "result" and events[-1]["result"].status == "done"


async def test_only_configured_hook_and_review_steps_run(tmp_path: Path, make_spec: Any) -> None:
    seen: list[int] = []

    def count(items: list[Any], context: Any) -> None:
        seen.append(len(items))

    spec = make_spec(run={"review": ["answers"], "auto_approve": False})
    events = [
        e
        async for e in astream(
            spec, chat_model=FakeChatModel(), hooks={"after_questions": count}, **_kw(tmp_path)
        )
    ]
    stages = [e["stage"] for e in events if e["type"] == "stage" and e["event"] == "start"]
    assert seen == [3]
    assert "hooks_after_questions" in stages and "review_answers" in stages
    assert stages[-1] == "review_answers"  # paused there for the reviewer
    skipped = {"hooks_after_persona", "review_persona", "review_questions", "hooks_after_answers"}
    assert not skipped & set(stages)
    assert events[-1]["result"].status == "waiting_for_review"


async def test_personagen_as_a_subgraph(tmp_path: Path, make_spec: Any) -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    from personagen.data.chunk_store import ChunkStore
    from personagen.graph.context import RunContext
    from personagen.llm.factory import make_llm_client
    from personagen.specfile import parse_spec

    class Parent(TypedDict, total=False):
        spec: Any
        run_id: str
        status: str
        bundle_dir: str
        pairs: dict[str, Any]
        notes: Annotated[list[str], operator.add]

    def summarize(state: Parent) -> dict[str, Any]:
        accepted = [p for p in state["pairs"].values() if p.status == "accepted"]
        return {"notes": [f"{len(accepted)} accepted in {state['bundle_dir']}"]}

    parent = StateGraph(Parent, context_schema=RunContext)
    parent.add_node("personagen", personagen.build_graph().compile())
    parent.add_node("summarize", summarize)
    parent.add_edge(START, "personagen")
    parent.add_edge("personagen", "summarize")
    parent.add_edge("summarize", END)
    graph = parent.compile(checkpointer=InMemorySaver())

    spec = parse_spec(make_spec())
    context = RunContext(
        llm=make_llm_client(spec.llm, chat_model=FakeChatModel()),
        store=ChunkStore(":memory:"),
        out_dir=tmp_path / "out",
    )
    out = await graph.ainvoke(
        {"spec": spec, "run_id": "sub-1"},
        {"configurable": {"thread_id": "parent-1"}},
        context=context,
    )
    assert out["status"] == "done"
    assert out["notes"] == [f"3 accepted in {tmp_path / 'out' / 'sub-1'}"]
    assert (tmp_path / "out" / "sub-1" / "qa.jsonl").is_file()


async def test_graph_invoked_without_a_context_builds_its_own(
    tmp_path: Path, make_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As LangGraph Studio runs it: JSON input (a spec mapping, no run id), no context."""
    from langgraph.checkpoint.memory import InMemorySaver

    monkeypatch.setenv("PERSONAGEN_OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("PERSONAGEN_STATE_DIR", str(tmp_path / "state"))
    graph = personagen.build_graph().compile(checkpointer=InMemorySaver())
    spec = json.loads(json.dumps(make_spec()))  # what a JSON client sends
    config = {"configurable": {"thread_id": "studio-1"}}
    out = await graph.ainvoke({"spec": spec}, config)

    assert out["status"] == "done" and out["run_id"] == "studio-1"
    bundle = tmp_path / "out" / "studio-1"
    assert out["bundle_dir"] == str(bundle)
    assert len([p for p in out["pairs"].values() if p.status == "accepted"]) == 3
    metadata = json.loads((bundle / "metadata.json").read_text())
    # The model calls were accounted as personagen.run accounts them.
    totals = metadata["usage"]["totals"]
    assert totals["llm_calls"] == len(metadata["llm_calls"]) > 0 and totals["total_tokens"] > 0
    assert (tmp_path / "state" / "usage.sqlite").is_file()
    state = await graph.aget_state(config)
    assert isinstance(state.values["spec"], personagen.RunSpec)
    from personagen.graph import context as contexts

    assert "studio-1" not in contexts._defaults  # released (and closed) when the run ended


async def test_replacement_questions_go_through_the_after_questions_hooks(
    tmp_path: Path, make_spec: Any
) -> None:
    seen: list[tuple[int, list[str]]] = []

    def no_competitors(items: list[HookItem], context: Any) -> list[HookItem]:
        seen.append((context.iteration, [i.question for i in items]))
        return [i for i in items if "competitor" not in i.question.lower()]

    judged: dict[str, int] = {}

    def persona_fit(request: FakeRequest) -> dict[str, Any]:
        question = request.tag("question")[0]
        judged[question] = judged.get(question, 0) + 1
        if len(judged) == 1 and judged[question] == 1:  # the first question: not this persona's
            return {"reason": "not a buyer's question", "question_fit": 1, "answer_fit": 5}
        return {"reason": "fits", "question_fit": 5, "answer_fit": 5}

    model = FakeChatModel(
        responders={
            "PersonaFitOut": persona_fit,
            "ReplacementQuestionOut": lambda r: {"question": "What do competitors charge?"},
        }
    )
    result = await arun(
        make_spec(run={"cache": False}),
        chat_model=model,
        hooks={"after_questions": no_competitors},
        **_kw(tmp_path),
    )
    assert len(seen) == 2
    assert seen[0][0] == 1 and len(seen[0][1]) == 3
    assert seen[1] == (2, ["What do competitors charge?"])  # only the new question, not re-asked
    replaced = [p for p in result.pairs.values() if p.question == "What do competitors charge?"]
    assert len(replaced) == 1 and replaced[0].status == "rejected"
    assert "removed by hook after_questions" in replaced[0].feedback[0]
    assert not [c for c in model.calls_for("AnswerOut") if "competitors" in c.user]


async def test_langgraph_json_points_at_a_graph_that_runs_from_json(
    tmp_path: Path, make_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `langgraph dev` loads: the module:attribute in langgraph.json, run from JSON."""
    import importlib

    from langgraph.checkpoint.memory import InMemorySaver

    from tests.conftest import REPO

    config = json.loads((REPO / "langgraph.json").read_text())
    module, _, attribute = config["graphs"]["personagen"].partition(":")
    graph = getattr(importlib.import_module(module), attribute)
    monkeypatch.setenv("PERSONAGEN_OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("PERSONAGEN_STATE_DIR", str(tmp_path / "state"))
    served = graph.copy(update={"checkpointer": InMemorySaver()})  # as the server does
    spec = json.loads(json.dumps(make_spec()))
    out = await served.ainvoke({"spec": spec}, {"configurable": {"thread_id": "dev-1"}})
    assert out["status"] == "done" and (tmp_path / "out" / "dev-1" / "qa.jsonl").is_file()
