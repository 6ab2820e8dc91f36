"""``alignlab world ...`` commands: build the toy world, score responses against its judge.

    alignlab world build [--seed 0] [--size small] [--output DIR] [--force]
    alignlab world score RESPONSES.jsonl [--output results.json]
    alignlab world eval --model PATH --output DIR [--reference PATH] [--samples N]

Handlers import the world lazily so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab world build`` and ``alignlab world score``."""
    world = subparsers.add_parser("world", help="the toy world: build it, score responses against its judge")
    commands = world.add_subparsers(dest="world_command", required=True)

    build = commands.add_parser("build", help="write knowledge base, corpus, datasets and tokenizer (cached)")
    build.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    build.add_argument("--size", default="small", help="small (default) or medium")
    build.add_argument(
        "--output", default=None, help="directory (default: the user cache, keyed by seed/size)"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if a verified build exists")
    build.set_defaults(handler=_build)

    score = commands.add_parser(
        "score",
        help="score responses with the world's judge",
        description="RESPONSES is JSONL with one row per response: 'meta' (a row of prompts_eval.jsonl's meta) "
        "or 'prompt' (text or chat messages), and 'response' (or 'completion').",
    )
    score.add_argument("responses", help="JSONL file of prompts and responses")
    score.add_argument("--output", default=None, help="also write the metrics as JSON here")
    score.set_defaults(handler=_score)

    evaluate = commands.add_parser(
        "eval", help="sample a model on the world's held-out prompts and grade it (writes DIR/results.json)"
    )
    evaluate.add_argument("--model", required=True, help="model directory or alignlab run directory")
    evaluate.add_argument("--output", required=True, help="directory for results.json and samples.jsonl")
    evaluate.add_argument("--reference", default=None, help="also estimate KL(model || reference) per answer")
    evaluate.add_argument("--samples", type=int, default=2, help="answers sampled per prompt (default 2)")
    evaluate.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
    evaluate.add_argument("--max-new-tokens", type=int, default=48, help="answer length cap (default 48)")
    evaluate.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    evaluate.add_argument("--size", default="small", help="world size (default small)")
    evaluate.add_argument("--world", default=None, help="world directory (default: the user cache)")
    evaluate.set_defaults(handler=_eval)


def _build(args: argparse.Namespace) -> None:
    from alignlab.world.build import build_world

    paths = build_world(args.output, seed=args.seed, size=args.size, force=args.force)
    print(f"world in {paths.root}: tokenizer {paths.tokenizer.name}/, datasets {', '.join(paths.datasets)}")


def _score(args: argparse.Namespace) -> None:
    from alignlab.core.io import atomic_write_json
    from alignlab.errors import WorldError
    from alignlab.world.datasets import read_jsonl
    from alignlab.world.evaluate import evaluate_responses

    prompts, responses = [], []
    for i, row in enumerate(read_jsonl(args.responses)):
        prompt = row.get("meta") if isinstance(row.get("meta"), dict) else row.get("prompt")
        response = row.get("response", row.get("completion"))
        if isinstance(response, list):  # a conversational completion: [{"role": "assistant", ...}]
            response = response[-1]["content"] if response else None
        if prompt is None or not isinstance(response, str):
            raise WorldError(f"{args.responses}, row {i}: needs 'meta' or 'prompt', and 'response' text")
        prompts.append(prompt)
        responses.append(response)
    metrics = evaluate_responses(prompts, responses)
    if args.output:
        atomic_write_json(Path(args.output), metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_family"}, indent=1))


def _eval(args: argparse.Namespace) -> None:
    from alignlab.errors import WorldError
    from alignlab.world.build import build_world
    from alignlab.world.model_eval import RATES, evaluate_model

    if args.samples < 1 or args.max_new_tokens < 1:
        raise WorldError("--samples and --max-new-tokens must be at least 1")
    world = build_world(args.world, seed=args.seed, size=args.size)
    result = evaluate_model(args.model, world, reference=args.reference, samples=args.samples,
                            max_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                            output_dir=args.output)
    for key in (*RATES, "kl_to_reference"):
        if result.get(key) is not None:
            print(f"{key:>16}: {result[key]:.3f}")
    print(f"{result['n']} answers; results in {Path(args.output) / 'results.json'}")
