"""``alignlab interpret cache|patch|lens|heads``: thin layers over :mod:`alignlab.interpret`, each writing
``results.json`` (with command, commit, seed and machine) and ``report.html`` into a run directory.

    alignlab interpret cache --model runs/sft --prompts "The capital of Velm is" --names "blocks.*.attn.hook_pattern"
    alignlab interpret patch --model runs/sft --clean "..." --corrupted "..." --answer " Oslo" --wrong " Rome"
    alignlab interpret lens --model runs/sft --prompts "The capital of Velm is"
    alignlab interpret heads --model runs/sft --output runs/heads

Each command's options are the fields of its config dataclass below; ``--help`` lists them, ``--config`` and
``--set key=value`` set any of them. Torch and transformers are imported when a command runs.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.cli import add_config_command, parse_command_config
from alignlab.errors import ConfigError, InterpretError


@dataclass
class InterpretConfig:
    """What every interpret command needs: a model and a run directory."""

    model: str
    """model directory (a transformers causal LM with its tokenizer, e.g. an alignlab run directory)"""
    output: str
    """run directory for results.json and report.html"""
    chat: bool = False
    """wrap each prompt in the tokenizer's chat template as a user turn (with the assistant prompt after it)"""
    continuation: str = ""
    """text appended to every prompt (after the assistant prompt when --chat), e.g. the start of an answer"""
    seed: int = 0
    """random seed (random token sequences)"""


@dataclass
class CacheConfig(InterpretConfig):
    """Cache activations of some prompts; the report shows every cached attention pattern of the first."""

    prompts: list[str] = field(default_factory=list)
    """prompts to run (repeat the flag or separate them with commas)"""
    names: list[str] = field(default_factory=lambda: ["blocks.*.attn.hook_pattern", "blocks.*.hook_resid_post"])
    """hook names or shell-style patterns of them (e.g. 'blocks.*.attn.hook_pattern')"""
    save: bool = True
    """also write the tensors to cache.safetensors (one entry per prompt and name: 'NAME/INDEX')"""


@dataclass
class PatchConfig(InterpretConfig):
    """Activation patching clean → corrupted by layer × position and by head, with attribution patching."""

    clean: list[str] = field(default_factory=list)
    """clean prompts"""
    corrupted: list[str] = field(default_factory=list)
    """corrupted prompts, one per clean prompt, with the same number of tokens"""
    answer: list[str] = field(default_factory=list)
    """the clean answer of each pair (one token, e.g. ' Oslo'); metric: logit(answer) - logit(wrong)"""
    wrong: list[str] = field(default_factory=list)
    """the corrupted answer of each pair (one token)"""
    point: str = "hook_resid_pre"
    """per-position point patched at each layer and position"""
    head_point: str = "attn.hook_z"
    """per-head point patched at each layer and head (every position)"""
    runs_per_batch: int = 8
    """patched runs stacked into one forward pass"""


@dataclass
class LensConfig(InterpretConfig):
    """Logit lens of some prompts: each layer's prediction of the next token."""

    prompts: list[str] = field(default_factory=list)
    """prompts to read"""
    top_k: int = 3
    """top tokens per layer reported at the last position"""


@dataclass
class HeadsConfig(InterpretConfig):
    """Previous-token, duplicate-token and induction scores of every head."""

    prompts: list[str] = field(default_factory=list)
    """prompts with the same number of tokens (empty: random tokens repeated once, [BOS] r r)"""
    batch: int = 8
    """random sequences when no prompts are given"""
    length: int = 20
    """tokens per random half"""
    exclude_bos: bool = True
    """zero the attention to position 0 before scoring (TransformerLens detect_head's option)"""
    error_measure: str = "mul"
    """mul: fraction of attention on the expected keys; abs: 1 - n·mean|A - D|"""


# ------------------------------------------------------------------------------------------- shared plumbing


def _start(config: InterpretConfig):
    """Refuse an output directory holding foreign files, then load the model and tokenizer (nothing is
    written until :func:`_finish`, once the results exist)."""
    from alignlab.core.models import load_causal_lm, load_tokenizer
    from alignlab.core.rundir import foreign_files

    output = Path(config.output)
    if files := foreign_files(output):
        raise ConfigError(f"output directory '{output}' holds files alignlab did not write "
                          f"({', '.join(files[:5])}); choose another --output")
    return load_causal_lm(config.model).eval(), load_tokenizer(config.model)


def _encode(tokenizer, config: InterpretConfig, prompts: list[str], what: str = "prompts"):
    """Token ids ``[n, p]`` of prompts that must have the same length (InterpretError naming the odd one)."""
    import torch

    if not prompts:
        raise InterpretError(f"no {what} given")
    ids = []
    for text in prompts:
        if config.chat:
            ids.append(tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                     add_generation_prompt=True, tokenize=True, return_dict=False))
        else:
            ids.append(tokenizer(text).input_ids)
        if config.continuation:
            ids[-1] = list(ids[-1]) + tokenizer(config.continuation, add_special_tokens=False).input_ids
    for i, row in enumerate(ids):
        if len(row) != len(ids[0]):
            raise InterpretError(f"{what}[{i}] has {len(row)} tokens but {what}[0] has {len(ids[0])}; "
                                 "these prompts are compared position by position, so give them equal lengths")
    return torch.tensor(ids)


def _single_token(tokenizer, text: str, what: str) -> int:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise InterpretError(f"{what} '{text}' is {len(ids)} tokens ({tokenizer.convert_ids_to_tokens(ids)}); "
                             "the metric compares single-token answers")
    return ids[0]


def _labels(tokenizer, ids) -> list[str]:
    return [f"{i}:{t}" for i, t in enumerate(tokenizer.convert_ids_to_tokens(ids.tolist()))]


def _finish(config: InterpretConfig, results: dict[str, Any], report) -> Path:
    """Mark the run directory as alignlab's (config.yaml, marker), then write results.json and report.html."""
    from alignlab.core.provenance import write_result
    from alignlab.core.rundir import announce_config, write_run_files

    output = Path(config.output)
    announce_config(config, output)
    write_run_files(output)
    path = write_result(output / "results.json", results, seed=config.seed, config=config)
    report.write(output / "report.html")
    return path


def _attention_figures(report, cache, tokenizer, ids) -> None:
    for name in cache:
        if name.endswith("attn.hook_pattern"):
            for head, pattern in enumerate(cache[name][0]):
                report.heatmap(f"{name} head {head}", pattern.float().tolist(), xlabel="key", ylabel="query",
                               xticks=_labels(tokenizer, ids[0]), yticks=_labels(tokenizer, ids[0]))


# ----------------------------------------------------------------------------------------------- commands


def interpret_cache(config: CacheConfig) -> dict[str, Any]:
    """Run ``run_with_cache`` on the prompts; results: each cached name's shape and per-layer norms."""
    import torch

    from alignlab.interpret.hooks import hook_points, run_with_cache
    from alignlab.report.html import Report

    model, tokenizer = _start(config)
    valid = hook_points(model)
    selected = [n for n in valid if any(fnmatch.fnmatchcase(n, pattern) for pattern in config.names)]
    unmatched = [p for p in config.names if not any(fnmatch.fnmatchcase(n, p) for n in valid)]
    if unmatched:
        from alignlab.interpret.hooks import check_hook_name

        check_hook_name(model, unmatched[0])  # raises with close matches
    ids = _encode(tokenizer, config, config.prompts)
    with torch.no_grad():
        logits, cache = run_with_cache(model, ids, names=selected)
    results = {"tokens": tokenizer.convert_ids_to_tokens(ids[0].tolist()),
               "shapes": {n: list(t.shape) for n, t in cache.items()},
               "mean_norm": {n: float(t.float().norm(dim=-1).mean()) for n, t in cache.items()}}
    report = Report(f"Activation cache: {config.model}")
    report.table("Cached activations", ["name", "shape", "mean norm (last axis)"],
                 [[n, str(results["shapes"][n]), results["mean_norm"][n]] for n in cache])
    _attention_figures(report, cache, tokenizer, ids)
    _finish(config, results, report)
    if config.save:
        from safetensors.torch import save_file

        save_file({f"{n}/{i}": t[i].clone(memory_format=torch.contiguous_format) for n, t in cache.items() for i in range(len(t))},
                  str(Path(config.output) / "cache.safetensors"))
    return results


def interpret_patch(config: PatchConfig) -> dict[str, Any]:
    """Activation patching by position and by head, attribution patching of both, their correlations."""
    import torch

    from alignlab.interpret.patching import (
        attribution_patching,
        correlation,
        logit_difference,
        patch_by_head,
        patch_by_position,
    )
    from alignlab.report.html import Report

    if not (len(config.clean) == len(config.corrupted) == len(config.answer) == len(config.wrong)):
        raise InterpretError(f"give one corrupted prompt, answer and wrong answer per clean prompt (clean "
                             f"{len(config.clean)}, corrupted {len(config.corrupted)}, answer "
                             f"{len(config.answer)}, wrong {len(config.wrong)})")
    model, tokenizer = _start(config)
    clean = _encode(tokenizer, config, config.clean, "clean")
    corrupted = _encode(tokenizer, config, config.corrupted, "corrupted")
    answer = torch.tensor([_single_token(tokenizer, a, "answer") for a in config.answer])
    wrong = torch.tensor([_single_token(tokenizer, w, "wrong") for w in config.wrong])
    metric = logit_difference(answer, wrong)
    with torch.no_grad():
        clean_metric, corrupted_metric = (float(metric(model(ids).logits)) for ids in (clean, corrupted))
        by_position = patch_by_position(model, clean, corrupted, metric, config.point,
                                        runs_per_batch=config.runs_per_batch)
        by_head = patch_by_head(model, clean, corrupted, metric, config.head_point,
                                runs_per_batch=config.runs_per_batch)
    attribution_position = attribution_patching(model, clean, corrupted, metric, config.point)
    attribution_head = attribution_patching(model, clean, corrupted, metric, config.head_point, by="head")
    results = {
        "clean_logit_diff": clean_metric, "corrupted_logit_diff": corrupted_metric,
        "tokens": tokenizer.convert_ids_to_tokens(clean[0].tolist()),
        "by_position": by_position.tolist(), "by_head": by_head.tolist(),
        "attribution_by_position": attribution_position.tolist(), "attribution_by_head": attribution_head.tolist(),
        "attribution_correlation": {
            "by_position": correlation(attribution_position, by_position - corrupted_metric),
            "by_head": correlation(attribution_head, by_head - corrupted_metric)},
    }
    report = Report(f"Activation patching: {config.model}")
    report.table("Logit difference", ["run", "logit(answer) - logit(wrong)"],
                 [["clean", clean_metric], ["corrupted", corrupted_metric]])
    layers = [str(i) for i in range(by_position.shape[0])]
    report.heatmap(f"Patching {config.point} (logit diff)", by_position.tolist(), xlabel="position",
                   ylabel="layer", xticks=_labels(tokenizer, clean[0]), yticks=layers, colorbar="logit diff")
    report.heatmap(f"Patching {config.head_point} (logit diff)", by_head.tolist(), xlabel="head", ylabel="layer",
                   yticks=layers, colorbar="logit diff")
    report.scatter_plot("Attribution vs activation patching (effect on logit diff)",
                        [(float(a), float(r), "") for a, r in zip(attribution_position.flatten(),
                                                                  (by_position - corrupted_metric).flatten())],
                        xlabel="attribution estimate", ylabel="patching effect")
    report.text(f"Correlation of attribution with real patching: by position "
                f"{results['attribution_correlation']['by_position']:.3f}, by head "
                f"{results['attribution_correlation']['by_head']:.3f}.", note=True)
    _finish(config, results, report)
    return results


def interpret_lens(config: LensConfig) -> dict[str, Any]:
    """Logit lens of each prompt: the probability of the actual next token per layer, and the top tokens at
    the last position per layer."""
    import torch

    from alignlab.interpret.lens import logit_lens, plot_logit_lens
    from alignlab.report.html import Report

    model, tokenizer = _start(config)
    report = Report(f"Logit lens: {config.model}")
    results: dict[str, Any] = {"prompts": []}
    for text in config.prompts or []:
        ids = _encode(tokenizer, config, [text])
        with torch.no_grad():
            lens = logit_lens(model, ids)[:, 0]  # [layers + 1, p, vocab]
        targets = ids[0, 1:]
        next_prob = lens[:, :-1].gather(-1, targets.view(1, -1, 1).expand(lens.shape[0], -1, 1)).squeeze(-1).exp()
        top = lens[:, -1].topk(config.top_k, dim=-1)
        results["prompts"].append({
            "prompt": text, "tokens": tokenizer.convert_ids_to_tokens(ids[0].tolist()),
            "next_token_prob": next_prob.tolist(),
            "last_position_top": [[[tokenizer.convert_ids_to_tokens(int(i)), float(p.exp())]
                                   for i, p in zip(idx, val)] for idx, val in zip(top.indices, top.values)]})
        report.figure(plot_logit_lens(lens[:, :-1], targets, labels=_labels(tokenizer, targets), title=text[:60]),
                      text)
        report.table(f"Top tokens at the last position: {text[:60]}", ["layer", "top tokens (p)"],
                     [[layer if layer < lens.shape[0] - 1 else "final",
                       ", ".join(f"{t} ({p:.2f})" for t, p in row)]
                      for layer, row in enumerate(results["prompts"][-1]["last_position_top"])])
    if not results["prompts"]:
        raise InterpretError("no prompts given")
    _finish(config, results, report)
    return results


def interpret_heads(config: HeadsConfig) -> dict[str, Any]:
    """Head scores of every head for the three head kinds, on the prompts or on repeated random tokens."""
    import torch

    from alignlab.interpret.heads import HEAD_KINDS, head_scores, repeated_tokens
    from alignlab.report.html import Report

    model, tokenizer = _start(config)
    if config.prompts:
        ids = _encode(tokenizer, config, config.prompts)
    else:
        special = set(tokenizer.all_special_ids)
        low = max(special) + 1 if special else 0
        ids = repeated_tokens(config.batch, config.length, model.config.vocab_size, bos=tokenizer.bos_token_id,
                              seed=config.seed, low=low)
    with torch.no_grad():
        scores = {kind: head_scores(model, ids, kind, exclude_bos=config.exclude_bos,
                                    error_measure=config.error_measure) for kind in HEAD_KINDS}
    results = {"input": "prompts" if config.prompts else "repeated random tokens", "shape": list(ids.shape),
               "scores": {kind: s.tolist() for kind, s in scores.items()},
               "best": {kind: {"layer": int(s.argmax() // s.shape[1]), "head": int(s.argmax() % s.shape[1]),
                               "score": float(s.max())} for kind, s in scores.items()}}
    report = Report(f"Attention-head scores: {config.model}")
    report.table("Best head per kind", ["kind", "layer", "head", "score"],
                 [[k, b["layer"], b["head"], b["score"]] for k, b in results["best"].items()])
    for kind, s in scores.items():
        report.heatmap(f"{kind} score", s.tolist(), xlabel="head", ylabel="layer", colorbar="score")
    _finish(config, results, report)
    return results


# --------------------------------------------------------------------------------------------- the commands

COMMON_FLAGS = ("model", "output", "chat", "continuation", "seed")
LISTS = {"cache": ["prompts", "names"], "patch": ["clean", "corrupted", "answer", "wrong"], "lens": ["prompts"],
         "heads": ["prompts"]}
COMMANDS = {
    "cache": (CacheConfig, interpret_cache, ("save",), "cache activations at hook points (attention heatmaps)"),
    "patch": (PatchConfig, interpret_patch, ("point", "head_point", "runs_per_batch"),
              "activation and attribution patching clean → corrupted"),
    "lens": (LensConfig, interpret_lens, ("top_k",), "logit lens: each layer's next-token prediction"),
    "heads": (HeadsConfig, interpret_heads, ("batch", "length", "exclude_bos", "error_measure"),
              "previous-token, duplicate-token and induction scores of every head"),
}


def _handler(name: str):
    def run(args: argparse.Namespace) -> None:
        config_cls, function, flags, _ = COMMANDS[name]
        config = parse_command_config(config_cls, args, flags=COMMON_FLAGS + flags, lists=LISTS[name])
        function(config)
        print(f"results.json and report.html in {config.output}")

    return run


# Interpretability areas with commands of their own (each module defines add_commands(interpret_subparsers)).
SUBCOMMAND_MODULES = ["alignlab.interpret.cli_steer", "alignlab.interpret.toy.cli"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab interpret cache|patch|lens|heads``."""
    interpret = subparsers.add_parser("interpret", help="mechanistic interpretability: cache, patch, lens, heads")
    commands = interpret.add_subparsers(dest="interpret_command", required=True)
    for name, (_, _, _, help_text) in COMMANDS.items():
        add_config_command(commands, name, _handler(name), help=help_text)
    for module in SUBCOMMAND_MODULES:  # the other interpretability areas add their own sub-commands
        importlib.import_module(module).add_commands(commands)
