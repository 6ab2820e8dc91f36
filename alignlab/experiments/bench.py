"""Every offline method on the toy world, from the same SFT model, with the same data and (bar ``PASSES``) budget.

For each method the bench trains on the world's data of the kind the method needs (pairs, ranked lists,
unpaired labels; all from the same world and annotators), with the same number of optimiser steps,
batch size, learning rate and, for the KL-anchored methods, KL strength β (``METHOD_SETTINGS`` and
``PASSES`` list the few method-specific settings, with reasons), then answers the world's held-out
evaluation prompts and reports what the world's judge says (ground truth, not a learned reward):

- helpfulness, honesty, harmlessness, toxicity, bias and the true reward (:mod:`alignlab.world.evaluate`),
  of answers sampled at temperature 1, as the demo evaluates (:mod:`alignlab.world.model_eval`),
- the true reward's gain over the SFT model with its standard error, paired by prompt (:func:`paired_gain`),
- KL(π‖π_SFT), estimated on the same answers: mean of Σ_t log π(y_t) − log π_SFT(y_t),
- wall time of training.

The world and its pretrained base model come from the cached builders the demo uses; the SFT model is
given (``sft_model``) or trained once from the base model with the demo's SFT settings. The SFT model
itself is the first row. Outputs in ``output``: ``results.json``, ``results.md`` (the
table) and ``report.html``; each method's run directory is kept under ``output/runs``.

Example::

    >>> from alignlab.experiments.bench import BenchConfig, bench_methods
    >>> table = bench_methods(BenchConfig(methods=["dpo", "kto"], max_steps=100))   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

# the world dataset each kind of training data comes from; which kind a method takes is declared once, in the
# registry (pairs for the DPO family, ORPO, SimPO, CPO, CRINGE, Chain of Hindsight; ranked lists; unpaired labels)
WORLD_DATA = {"pair": "pairs_train", "ranked": "ranked_train", "unpaired": "kto_train"}


def offline_methods() -> dict[str, str]:
    """Every offline method the registry declares -> the world dataset it trains on."""
    from alignlab.registry import methods

    return {name: WORLD_DATA[m.data] for name, m in methods("offline").items()}


# What the bench sets for a method instead of its config's defaults (a user's `overrides` come after), and
# why; every other setting is the bench's shared one. The measurements behind each choice are on the docs'
# results page.
METHOD_SETTINGS: dict[str, list[str]] = {
    # the paper's objective, L = L_rank + L_ft (Eq. 5); the authors' code weighs the ranking term 100× for
    # lr 2e-5, which at the bench's higher lr garbles answers
    "rrhf": ["rrhf_weight=1"],
    # DiscoPOP's loss rises with the margin ρ = βh for |ρ| below about τ = 0.05, and a policy that starts as
    # its reference sits exactly there: a small β first moves it toward the rejected answers (a tuned setting)
    "discopop": ["beta=3.0"],
    # Chain of Hindsight's lr, with PASSES (a tuned setting)
    "hindsight": ["train.lr=1e-3"],
}
# Passes over the same data (max_steps × PASSES steps) for a method that one pass teaches nothing yet.
# Chain of Hindsight must first learn what its feedback phrases mean (a pretrained LLM knows; the world's
# model has never seen feedback); its steps are cheaper than a DPO step (one sequence, no reference model),
# and the table's train_seconds shows what the passes cost.
PASSES: dict[str, int] = {"hindsight": 10}
GROUND_TRUTH = ["helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward", "true_reward_stderr", "cost"]
# gain_vs_sft ± gain_stderr: the true reward's gain over the SFT model paired by prompt (see paired_gain)
COLUMNS = [*GROUND_TRUTH, "gain_vs_sft", "gain_stderr", "kl_to_sft", "train_seconds"]


@dataclass
class WorldExperimentConfig:
    """What every toy-world experiment has: the world, where it writes."""

    world: bool = False
    """run on the toy world (required: it is the only benchmark data so far)"""
    output: str = "runs/bench"
    """directory for results.json, results.md, the report and each method's run"""
    world_dir: str | None = None
    """a built world (default: the user cache, built on first use, as the demo does)"""
    world_seed: int = 0
    """world seed (when the world is built here)"""


@dataclass
class WorldBenchConfig(WorldExperimentConfig):
    """What both world method benches share: the world, the starting model, the evaluation and the seed."""

    methods: list[str] = field(default_factory=list)
    """methods to compare (names of `alignlab train`)"""
    sft_model: str | None = None
    """the SFT model every method starts from (default: built here, see the bench's docs)"""
    world_size: str = "small"
    """world size (when the world is built here)"""
    max_steps: int = 100
    """training steps per method (the same budget for all)"""
    lr: float = 1e-4
    """learning rate for every method"""
    max_new_tokens: int = 48
    """tokens generated per answer"""
    eval_samples: int = 8
    """answers sampled (temperature 1) per held-out prompt"""
    eval_limit: int | None = None
    """evaluate on at most this many of the world's held-out prompts (default: all)"""
    overrides: dict[str, list[str]] = field(default_factory=dict)
    """extra config keys per method, e.g. {kto: [desirable_weight=1.2]}"""
    seed: int = 0
    """seed for training and sampling"""


@dataclass
class BenchConfig(WorldBenchConfig):
    """Train every offline method on the toy world from one SFT model and compare ground-truth scores."""

    output: str = "runs/bench-methods"
    """directory for results.json, results.md, report.html and each method's run"""
    methods: list[str] = field(default_factory=lambda: list(offline_methods()))
    """methods to compare (names of `alignlab train`)"""
    sft_flawed_fraction: float = 0.2
    """share of one-fault answers among the demonstrations the SFT model is trained on here (0: the world's
    perfect ``sft_train``, as the demo uses). Human-written SFT data have flaws, and preference data are
    there to fix what SFT learned from them: from perfect demonstrations there is almost nothing left to fix"""
    max_steps: int = 100
    """optimiser steps per method (the same budget for all; ~1 epoch of the small world's pairs)"""
    batch_size: int = 32
    """examples per step: pairs, ranked lists or labelled completions (the demo's DPO batch)"""
    lr: float = 1e-4
    """learning rate for every method (the demo's DPO learning rate)"""
    beta: float | None = 1.0
    """β of every KL-anchored method (the DPO family and KTO; None: each method's own default, mostly 0.1).
    On this world a strong anchor pays: a fact pair's wrong answer is another country's right one, so pushing
    it down drifts other facts (chosen on the evaluation prompts, so a tuned setting)"""
    warmup_steps: int = 10
    """linear warmup steps"""
    max_length: int = 128
    """tokens per training example (as in the demo)"""
    mixed_precision: str = "no"
    """bf16 autocast or not (the world's model is so small that fp32 is faster on a CPU)"""
    eval_samples: int = 32
    """answers sampled (temperature 1) per held-out prompt: more than the demo's, because methods differ by a
    few hundredths of true reward and the gains' standard errors must be smaller than that"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.sft_flawed_fraction <= 1.0:
            raise ValueError(f"sft_flawed_fraction must be in [0, 1], got {self.sft_flawed_fraction}")
        known = offline_methods()
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise ValueError(f"no toy-world bench for {unknown}; offline methods: {', '.join(known)}")


# ---- the world and the starting model ------------------------------------------------------------------


def world_and_sft(config: BenchConfig) -> tuple[Any, str]:
    """(WorldPaths, SFT model path). The world and its pretrained base model come from the demo pipeline's
    cached builders; the SFT model is ``config.sft_model`` or trained once from the base model with the
    demo's SFT settings, on demonstrations of which ``sft_flawed_fraction`` are flawed (written beside it),
    into ``output/sft-flawed-<fraction>`` (``output/sft`` for perfect ones; reused while its
    ``results.json`` exists)."""
    from alignlab.world.build import build_world

    paths = build_world(config.world_dir, seed=config.world_seed, size=config.world_size, verbose=False)
    if config.sft_model:
        return paths, config.sft_model
    flawed = config.sft_flawed_fraction
    sft_dir = Path(config.output) / (f"sft-flawed-{flawed:g}" if flawed else "sft")
    if not (sft_dir / "results.json").exists():
        from alignlab.core.data import DataConfig
        from alignlab.core.models import ModelConfig
        from alignlab.experiments.demo import DemoConfig
        from alignlab.outer.sft import SFTConfig, train_sft
        from alignlab.world.base_model import build_base_model
        from alignlab.world.datasets import DATASET_SIZES, World, sft_row, write_jsonl

        data = paths.datasets["sft_train"]
        if flawed:
            records = World(paths.seed, paths.size).sft_records(DATASET_SIZES[paths.size]["sft_train"],
                                                                flawed_fraction=flawed)
            sft_dir.parent.mkdir(parents=True, exist_ok=True)
            data = write_jsonl(sft_dir.with_name(sft_dir.name + "-data.jsonl"), [sft_row(r) for r in records])
        base_dir = build_base_model(paths)
        demo = DemoConfig(seed=config.world_seed, size=config.world_size)
        demo.sft.seed = config.seed
        train_sft(SFTConfig(model=ModelConfig(str(base_dir)), train=demo.sft, output=str(sft_dir),
                            data=DataConfig(path=str(data), eval_path=str(paths.datasets["sft_eval"]),
                                            max_length=128)))
    return paths, str(sft_dir)


# ---- evaluation ----------------------------------------------------------------------------------------


@dataclass
class Responder:
    """How a method's model is prompted and how its output is read (Chain of Hindsight differs)."""

    prompt_ids: Callable[[Any, list[dict[str, str]]], list[int]]
    read: Callable[[str], str] = str.strip


def responder(method: str, run_dir: Path | None) -> Responder:
    from alignlab.core.tokenize import render_prompt

    if method == "hindsight" and run_dir is not None:
        from alignlab.outer.hindsight import hindsight_answer, hindsight_prompt_ids

        phrases = json.loads((run_dir / "results.json").read_text())["hindsight"]
        return Responder(lambda tok, p: hindsight_prompt_ids(tok, p, phrases["good_phrase"], phrases["separator"]),
                         lambda text: hindsight_answer(text, phrases["bad_phrase"], phrases["good_phrase"]))
    plain = Responder(lambda tok, p: tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"])
    if method == "second-thoughts":  # the judge grades the revision, not the first thoughts or the edits
        from alignlab.outer.second_thoughts import revised_answer

        return Responder(plain.prompt_ids, revised_answer)
    return plain


def judge_answers(prompts: list, answers: list[str]) -> dict:
    """The world judge's rates of ``answers`` (answer k is to prompt k % len(prompts), as
    :func:`~alignlab.world.model_eval.sample_answers` lays them out), with each prompt's mean true reward for
    :func:`paired_gain`."""
    from alignlab.world.evaluate import evaluate_responses

    n_prompts = len(prompts)
    scores = evaluate_responses([prompts[k % n_prompts] for k in range(len(answers))], answers, per_response=True)
    per_prompt = [mean(scores["true_rewards"][i::n_prompts]) for i in range(n_prompts)]
    return {**{k: scores[k] for k in GROUND_TRUTH}, "stderr": scores["stderr"], "examples": answers[:3],
            "per_prompt_reward": per_prompt}


def evaluate_policy(model: str | Any, sft, tokenizer, prompts: list, respond: Responder, config: BenchConfig, *,
                    keep_answers: bool = False) -> dict:
    """The world's one protocol, as the demo evaluates (:func:`alignlab.world.model_eval.sample_answers`):
    ``eval_samples`` answers per held-out prompt at temperature 1, graded by the world's judge; KL(π‖π_SFT)
    estimated on the same answers (:func:`~alignlab.world.model_eval.kl_estimate`; π_SFT sees the plain
    prompt, and for Chain of Hindsight π sees it with the positive phrase). ``model`` is a model directory or a
    loaded model (e.g. a decoding rule such as SENSEI's heads or DExperts' logit arithmetic on the SFT model).
    Also returns the generation's CPU seconds and the answers' mean length in tokens, and with ``keep_answers``
    every answer (``answers``; answer k is to prompt k % len(prompts))."""
    import time

    from alignlab.core.models import load_causal_lm
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.world.model_eval import kl_estimate, sample_answers

    lm = HuggingFaceLM(load_causal_lm(model) if isinstance(model, str | Path) else model, tokenizer, batch_size=64)
    clock = time.process_time()
    sampled = sample_answers(lm, prompts, samples=config.eval_samples, max_tokens=config.max_new_tokens,
                             temperature=1.0, seed=config.seed,
                             prompt_ids=lambda messages: respond.prompt_ids(tokenizer, messages), read=respond.read)
    generation_seconds = time.process_time() - clock
    plain = [responder("sft", None).prompt_ids(tokenizer, p.messages) for p in sampled.prompts]
    kl = kl_estimate(lm.model, sft, sampled, pad_token_id=tokenizer.pad_token_id, reference_prompt_ids=plain)
    tokens = [len(ids) for ids in sampled.generated.completion_ids]
    return {**judge_answers(prompts, sampled.answers), "kl_to_sft": kl, "generation_cpu_seconds": generation_seconds,
            "answer_tokens": sum(tokens) / max(len(tokens), 1), **({"answers": sampled.answers} if keep_answers else {})}


def paired_gain(row: dict[str, Any], start: dict[str, Any]) -> dict[str, float]:
    """``row``'s true-reward gain over ``start`` (the SFT model) and its standard error, paired by prompt.

    Both were evaluated on the same prompts; per prompt, the difference of the two models' mean true
    reward over their sampled answers, then the mean and standard error of those differences. Pairing
    removes how hard each prompt is from the noise, so the standard error is smaller than that of two
    independent means.

    Example::

        >>> paired_gain({"per_prompt_reward": [3.0, 2.0, 4.0]}, {"per_prompt_reward": [2.5, 2.0, 3.5]})
        {'gain_vs_sft': 0.3333333333333333, 'gain_stderr': 0.16666666666666666}
    """
    diffs = [a - b for a, b in zip(row["per_prompt_reward"], start["per_prompt_reward"], strict=True)]
    return {"gain_vs_sft": mean(diffs), "gain_stderr": stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else math.nan}


# ---- training ------------------------------------------------------------------------------------------


def train_method(method: str, sft_path: str, data: Path, run_dir: Path, config: BenchConfig) -> float:
    """Train ``method`` from the SFT model; returns the wall time in seconds."""
    from alignlab.config import load_config
    from alignlab.registry import get_method, get_method_spec

    config_cls, fn = get_method(method)
    keys = [f"model.name_or_path={sft_path}", f"data.path={data}", f"output={run_dir}", "train.overwrite=true",
            f"train.max_steps={config.max_steps * PASSES.get(method, 1)}", f"train.batch_size={config.batch_size}",
            f"train.lr={config.lr}", f"train.seed={config.seed}", "train.progress=false", f"data.max_length={config.max_length}",
            f"train.warmup_steps={config.warmup_steps}", f"train.mixed_precision={config.mixed_precision}",
            "train.save_total_limit=1",
            # the first max_steps × batch_size rows (one pass; PASSES for a method listed there): no method
            # pays (e.g. for reference log-probs) for data its budget never reaches
            f"data.limit={config.max_steps * config.batch_size}"]
    names = {f.name for f in dataclasses.fields(config_cls)}
    spec = get_method_spec(method)
    if spec.loss is not None and "loss" in names:
        keys.append(f"loss={spec.loss}")  # the DPO family shares one config class
    if spec.kl_anchored and config.beta is not None:
        keys.append(f"beta={config.beta}")
    if "reference_cache_dir" in names:
        # each method pays for its own reference log-probs, so wall times compare (no cross-method cache hits)
        keys.append(f"reference_cache_dir={run_dir / 'reference-cache'}")
    start = time.perf_counter()
    fn(load_config(config_cls, None, keys + METHOD_SETTINGS.get(method, []) + list(config.overrides.get(method, []))))
    return time.perf_counter() - start


def bench_methods(config: BenchConfig) -> list[dict[str, Any]]:
    """Train and evaluate every method in ``config.methods``; write the table and report; return the rows."""
    from alignlab.core.models import load_causal_lm, load_tokenizer
    from alignlab.world.datasets import load_prompts

    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    paths, sft_path = world_and_sft(config)
    prompts = load_prompts(paths.datasets["prompts_eval"])[: config.eval_limit]
    tokenizer = load_tokenizer(sft_path)
    sft = load_causal_lm(sft_path).eval()
    rows = [{"method": "sft (start)", **evaluate_policy(sft_path, sft, tokenizer, prompts, responder("sft", None),
                                                        config), "train_seconds": 0.0}]
    rows[0].update(kl_to_sft=0.0, gain_vs_sft=0.0, gain_stderr=0.0)  # the same model: exactly zero
    write_outputs(out, config, rows)
    for method in config.methods:
        run_dir = out / "runs" / method
        seconds = train_method(method, sft_path, paths.datasets[offline_methods()[method]], run_dir, config)
        result = evaluate_policy(str(run_dir), sft, tokenizer, prompts, responder(method, run_dir), config)
        rows.append({"method": method, **result, **paired_gain(result, rows[0]), "train_seconds": seconds})
        write_outputs(out, config, rows)  # after every method, so a long bench shows progress and survives a crash
        print(f"[bench] {method}: true reward {result['true_reward']:.3f} (gain {rows[-1]['gain_vs_sft']:+.3f} ± "
              f"{rows[-1]['gain_stderr']:.3f}), KL {result['kl_to_sft']:.2f}, {seconds:.0f}s", flush=True)
    return rows


# ---- outputs -------------------------------------------------------------------------------------------


def _config_dict(config: BenchConfig) -> dict[str, Any]:
    from alignlab.config import to_dict

    return to_dict(config)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = "| method | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    lines += ["| " + " | ".join([row["method"], *(_fmt(row.get(c)) for c in COLUMNS)]) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def report_html(rows: list[dict[str, Any]], config: BenchConfig) -> str:
    """The bench's page in the one report format (:class:`alignlab.report.html.Report`): the settings, the
    table, and true reward against KL to the SFT model."""
    from alignlab.report.html import Report

    report = Report("Offline preference methods on the toy world")
    report.text("Same SFT model, same world data and budget for every method. Settings: "
                + json.dumps({k: v for k, v in _config_dict(config).items() if k != "overrides"}), note=True)
    report.table("Ground truth per method", ["method", *COLUMNS], [[r["method"], *(r.get(c) for c in COLUMNS)]
                                                                   for r in rows])
    points = [(r["kl_to_sft"], r["true_reward"], r["method"]) for r in rows
              if r.get("true_reward") is not None and math.isfinite(r.get("kl_to_sft", math.nan))]
    if points:
        report.scatter_plot("True reward vs KL to the SFT model", points, xlabel="KL(π‖π_SFT), nats",
                            ylabel="true reward")
    return report.render()


def write_outputs(out: Path, config: BenchConfig, rows: list[dict[str, Any]]) -> None:
    from alignlab.core.io import atomic_write_json, atomic_write_text
    from alignlab.core.provenance import provenance

    atomic_write_json(out / "results.json", {**provenance(seed=config.seed), "config": _config_dict(config), "rows": rows})
    atomic_write_text(out / "results.md", markdown_table(rows))
    atomic_write_text(out / "report.html", report_html(rows, config))
