"""``alignlab eval``, ``alignlab judge`` and ``alignlab serve``: thin layers over the Python API.

    alignlab eval --model runs/sft --tasks crows_pairs,advbench_refusal --output runs/sft/eval --limit 100
    alignlab judge --judge http://127.0.0.1:8000/v1#judge --models a=runs/a,b=runs/b --output runs/judge
    alignlab serve --model runs/sft --port 8000

Heavy modules are imported inside the handlers so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignlab.errors import EvalError


def _pairs(text: str, flag: str) -> dict[str, str]:
    """``a=x,b=y`` → ``{"a": "x", "b": "y"}``."""
    out = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise EvalError(f"{flag}: expected NAME=VALUE[,NAME=VALUE...], got '{item}'")
        out[key] = value
    return out


def run_eval(args: argparse.Namespace) -> None:
    from alignlab.evaluate.run import evaluate

    tasks = [t for t in args.tasks.split(",") if t]
    results = evaluate(
        args.model,
        tasks,
        args.output,
        limit=args.limit,
        batch_size=args.batch_size,
        judge=args.judge,
        data=_pairs(args.data or "", "--data"),
    )
    for name, res in results["tasks"].items():
        shown = ", ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in res["metrics"].items()
        )
        print(f"{name} (n={res['n']}): {shown}")
    print(f"results in {Path(args.output) / 'results.json'}")


def run_judge(args: argparse.Namespace) -> None:
    from alignlab.core.io import atomic_write_json, atomic_write_text
    from alignlab.evaluate import judge as J
    from alignlab.evaluate.lm import load_lm

    judges = [load_lm(spec) for spec in args.judge]
    questions = J.load_questions(args.questions)[: args.limit]
    models = _pairs(args.models, "--models")
    if not models:
        raise EvalError("--models needs at least one NAME=PATH_OR_URL")
    answers = {
        name: J.answer_questions(load_lm(spec), questions, max_tokens=args.max_tokens)
        for name, spec in models.items()
    }
    out = Path(args.output)
    results: dict = {"questions": args.questions, "n_questions": len(questions), "turn": args.turn}
    if args.mode == "single":
        graded = {
            name: J.grade_single(judges, questions, ans, turn=args.turn) for name, ans in answers.items()
        }
        results["single"] = {
            n: {"mean": g.mean, "parse_failures": g.parse_failures} for n, g in graded.items()
        }
        judgments = [{"model": n, **j} for n, g in graded.items() for j in g.judgments]
    else:
        if len(models) < 2:
            raise EvalError("pairwise judging needs at least two models in --models")
        results["pairwise"] = J.rank_models(judges, questions, answers, turn=args.turn)
        judgments = []
    atomic_write_text(
        out / "answers.jsonl",
        "".join(
            json.dumps({"model": n, "question_id": q, "turns": t}) + "\n"
            for n, ans in answers.items()
            for q, t in ans.items()
        ),
    )
    if judgments:
        atomic_write_text(out / "judgments.jsonl", "".join(json.dumps(j) + "\n" for j in judgments))
    atomic_write_json(out / "results.json", results)
    print(json.dumps({k: v for k, v in results.items() if k in ("single", "pairwise")}, indent=2))


def run_serve(args: argparse.Namespace) -> None:
    from alignlab.evaluate.serve import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        name=args.name,
        max_tokens_cap=args.max_tokens_cap,
        dtype=args.dtype,
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``eval``, ``judge`` and ``serve`` on the ``alignlab`` command."""
    p = subparsers.add_parser(
        "eval",
        help="run evaluation tasks on a model",
        description="Run tasks (built-in names or YAML files) and write results.json "
        "and per-sample JSONL into --output.",
    )
    p.add_argument(
        "--model", required=True, help="model dir, run dir, hub name, or http://host:port/v1[#model]"
    )
    p.add_argument("--tasks", required=True, help="comma-separated task names or YAML paths")
    p.add_argument("--output", required=True, help="directory for results.json and samples/")
    p.add_argument("--limit", type=int, help="first N rows of each task")
    p.add_argument("--batch-size", type=int, default=16, help="requests per forward pass (local models)")
    p.add_argument("--judge", help="judge model for judge-scored tasks (path or URL)")
    p.add_argument("--data", help="data file overrides, TASK=PATH[,TASK=PATH]")
    p.set_defaults(handler=run_eval)

    p = subparsers.add_parser(
        "judge",
        help="LLM-as-judge on MT-bench-style questions",
        description="Generate each model's answers, then grade them (single) or compare "
        "every pair in both orders and rank with Bradley-Terry (pairwise).",
    )
    p.add_argument(
        "--judge", action="append", required=True, help="judge model (path or URL); repeat for several"
    )
    p.add_argument("--models", required=True, help="NAME=PATH_OR_URL[,NAME=PATH_OR_URL...]")
    p.add_argument("--questions", required=True, help="questions JSONL (MT-bench format)")
    p.add_argument("--mode", choices=("single", "pairwise"), default="single")
    p.add_argument(
        "--turn", type=int, default=0, help="0 = first answer, 1 = second (the judge sees both turns)"
    )
    p.add_argument("--limit", type=int, help="first N questions")
    p.add_argument("--max-tokens", type=int, default=256, help="answer length")
    p.add_argument("--output", required=True, help="directory for answers, judgments and results.json")
    p.set_defaults(handler=run_judge)

    p = subparsers.add_parser("serve", help="OpenAI-compatible server over a local model (loopback only)")
    p.add_argument("--model", required=True, help="model dir, run dir or hub name")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="a loopback address")
    p.add_argument("--name", help="model name reported by /v1/models (default: --model)")
    p.add_argument("--max-tokens-cap", type=int, default=512, help="largest max_tokens a request may ask for")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.set_defaults(handler=run_serve)
