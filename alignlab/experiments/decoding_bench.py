"""``alignlab bench decoding --world``: align the toy world's misaligned base model at decoding time only.

An expert (SFT on the world's aligned demonstrations) and an anti-expert (SFT on the rejected answers of its
preference pairs: harmful help, insults, stereotypes, made-up facts) are trained from the base model; the base
model itself is never updated. Then, on the world's held-out prompts, with the world's judge:

- DExperts at each ``alpha``: z_base + α (z_expert − z_anti) (α = 0 is the base model);
- anti-expert re-ranking: best of ``rerank_n`` base samples by the anti-expert's relative likelihood;
- the expert alone, for reference (what training the model itself would give).

Every rate comes with its standard error (answers to one prompt clustered), and generation speed (tokens/s)
is measured against the base model in the same run. ``results.json`` carries command, commit, seed and machine.

Example::

    >>> from alignlab.experiments.decoding_bench import DecodingBenchConfig, bench_decoding
    >>> rows = bench_decoding(DecodingBenchConfig(world=True))   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.experiments.bench import WorldExperimentConfig

RATES = ("helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward")


@dataclass
class DecodingBenchConfig(WorldExperimentConfig):
    """Decoding-time alignment of the world's base model: DExperts over α, anti-expert re-ranking, the expert."""

    output: str = "runs/bench-decoding"
    """directory for results.json, report.html and the expert and anti-expert models"""
    base_model: str | None = None
    """the frozen model to steer (default: the world's base model, pretrained and cached on first use)"""
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])
    """DExperts strengths α"""
    rerank_n: int = 4
    """samples per prompt that anti-expert re-ranking chooses from (0: skip it)"""
    expert_steps: int = 150
    """SFT steps for the expert and for the anti-expert"""
    batch_size: int = 16
    """SFT batch size"""
    lr: float = 2e-4
    """SFT learning rate"""
    eval_samples: int = 4
    """answers sampled (temperature 1) per held-out prompt"""
    max_new_tokens: int = 48
    """tokens generated per answer"""
    seed: int = 0
    """seed for training and sampling"""


def anti_expert_data(world, out: Path) -> Path:
    """The rejected answers of the world's training pairs as SFT conversations (the undesirable text)."""
    import json

    from alignlab.core.io import atomic_write_text
    from alignlab.core.readers import read_records

    pairs = read_records(str(world.datasets["pairs_train"]), "pair")
    path = out / "anti_expert_data.jsonl"
    atomic_write_text(path, "".join(json.dumps({"prompt": p.prompt, "completion": [
        {"role": "assistant", "content": p.rejected}]}) + "\n" for p in pairs))
    return path


def bench_decoding(config: DecodingBenchConfig) -> list[dict[str, Any]]:
    """Train the expert and anti-expert, evaluate every decoding rule; write results.json and report.html."""
    from alignlab.core.data import DataConfig
    from alignlab.core.generation import GenerationConfig
    from alignlab.core.models import ModelConfig, load_causal_lm, load_tokenizer
    from alignlab.core.provenance import write_result
    from alignlab.core.trainer import TrainConfig
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.outer.decoding import dexperts, rerank_by_anti_expert
    from alignlab.outer.sft import SFTConfig, train_sft
    from alignlab.world.base_model import BaseModelConfig, build_base_model
    from alignlab.world.build import build_world
    from alignlab.world.datasets import load_prompts
    from alignlab.world.evaluate import evaluate_responses
    from alignlab.world.model_eval import sample_answers

    out = Path(config.output)
    world = build_world(config.world_dir, seed=config.world_seed, verbose=False)
    base_path = config.base_model or str(build_base_model(world, BaseModelConfig()))
    trained = {}
    for name, data in (("expert", str(world.datasets["sft_train"])), ("anti_expert", str(anti_expert_data(world, out)))):
        train = TrainConfig(max_steps=config.expert_steps, batch_size=config.batch_size, lr=config.lr,
                            seed=config.seed, progress=False, overwrite=True)
        train_sft(SFTConfig(model=ModelConfig(base_path), data=DataConfig(path=data, max_length=128), train=train,
                            output=str(out / name)))
        trained[name] = load_causal_lm(str(out / name)).eval()
    tokenizer = load_tokenizer(base_path)
    base = load_causal_lm(base_path).eval()
    prompts = load_prompts(world.datasets["prompts_eval"])

    def evaluate(name: str, model, **extra: Any) -> dict[str, Any]:
        sampled = sample_answers(HuggingFaceLM(model, tokenizer), prompts, samples=config.eval_samples,
                                 max_tokens=config.max_new_tokens, temperature=1.0, seed=config.seed)
        scores = evaluate_responses(sampled.prompts, sampled.answers)
        row = {"rule": name, **extra, **{r: scores[r] for r in RATES}, "stderr": scores["stderr"],
               "tokens_per_s": sampled.generated.num_tokens / max(sampled.generated.seconds, 1e-9)}
        print(f"[decoding] {name}: true reward {row['true_reward']:.3f}, harmlessness {row['harmlessness']:.3f}, "
              f"toxicity {row['toxicity']:.3f}, {row['tokens_per_s']:.0f} tokens/s", flush=True)
        return row

    rows = [evaluate(f"dexperts α={alpha:g}" if alpha else "base", dexperts(base, trained["expert"],
                                                                           trained["anti_expert"], alpha) if alpha
                     else base, alpha=alpha) for alpha in config.alphas]
    if config.rerank_n:
        answers = rerank_by_anti_expert(base, trained["anti_expert"], tokenizer,
                                        [p.messages for p in prompts] * config.eval_samples, n=config.rerank_n,
                                        config=GenerationConfig(max_new_tokens=config.max_new_tokens, seed=config.seed))
        scores = evaluate_responses(prompts * config.eval_samples, answers)
        rows.append({"rule": f"anti-expert re-ranking (best of {config.rerank_n})", "rerank_n": config.rerank_n,
                     **{r: scores[r] for r in RATES}, "stderr": scores["stderr"]})
    rows.append(evaluate("expert alone (trained)", trained["expert"]))
    write_result(out / "results.json", {"rows": rows}, seed=config.seed, config=config)
    _report(rows).write(out / "report.html")
    return rows


def _report(rows: list[dict[str, Any]]):
    from alignlab.report.html import Report

    report = Report("alignlab bench decoding: decoding-time alignment of the toy world's base model")
    report.text("The base model is frozen; DExperts adds α (expert − anti-expert) to its logits at every step, "
                "re-ranking keeps the sample the anti-expert likes least. Rates by the world's judge, ± standard error.")
    report.table("Decoding rules", ["rule", *RATES, "tokens/s"], [
        [r["rule"], *[f"{r[k]:.3f} ± {r['stderr'][k]:.3f}" if r["stderr"].get(k) is not None else r[k] for k in RATES],
         r.get("tokens_per_s", "–")] for r in rows])
    steered = [r for r in rows if "alpha" in r]
    report.line_plot("DExperts: rates against α", {
        rate: [(r["alpha"], r[rate]) for r in steered] for rate in ("harmlessness", "toxicity", "helpfulness")},
        xlabel="α", ylabel="rate")
    return report
