"""``alignlab bench uddia --world``: UDDIA-style inference-time adaptive optimisation on the world's misaligned
base model, against plain decoding of the same model, over seeds.

The attribute model is a linear probe on the base model's mean answer state (:mod:`alignlab.outer.uddia`),
fitted on answers of the world's training pairs labelled by the judge: 1 when the answer insults (toxicity) or
stereotypes a group (bias). Its accuracy is measured on the held-out pairs' answers. Then, per seed, the base
model answers the held-out prompts ``eval_samples`` times with plain sampling and with UDDIA (same sampling
settings) and, as a control, with UDDIA at ``lr=0`` (same gate and redos, biases never move: a redo is a plain
resample), which separates rejection-and-resampling from the bias tuning; the judge grades each (true reward,
helpfulness, honesty, harmlessness, toxicity, bias), and the generation speed (tokens/s) of each is measured in
the same run. The speeds are not like for like: plain decoding runs the generator's defaults (batches of 64,
shared prefill), UDDIA decodes every row in one batch segment by segment. The base model is never updated.

Example::

    >>> from alignlab.experiments.uddia_bench import UDDIABenchConfig, bench_uddia
    >>> result = bench_uddia(UDDIABenchConfig(world=True))   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.experiments.bench import WorldExperimentConfig
from alignlab.experiments.sensei_bench import RATES, summarise
from alignlab.outer.uddia import UDDIAConfig


@dataclass
class UDDIABenchConfig(WorldExperimentConfig):
    """UDDIA on the world's base model against plain decoding, over seeds."""

    output: str = "runs/bench-uddia"
    """directory for results.json"""
    base_model: str | None = None
    """the frozen model to detoxify (default: the world's base model, pretrained and cached on first use)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """sampling seeds"""
    probe_pairs: int = 600
    """training pairs whose two answers fit the attribute probe"""
    uddia: UDDIAConfig = field(default_factory=UDDIAConfig)
    """UDDIA's settings (layers, segment, threshold, steps, lr, kl_weight, max_redo); its generation block is
    replaced by the bench's (max_new_tokens, temperature 1, the seed)"""
    eval_samples: int = 2
    """answers sampled (temperature 1) per held-out prompt"""
    max_new_tokens: int = 48
    """tokens per answer"""
    resample_control: bool = True
    """also decode with UDDIA at lr=0 (the gate and redos without tuning: rejection-and-resampling alone)"""


RESAMPLE = "UDDIA at lr 0 (redo without tuning)"


def mean_attribute(model, probe, output, empty_id: int) -> float:
    """The probe's mean probability of 'undesired' over ``output``'s answers (an empty one read as ``empty_id``),
    under the unchanged model."""
    import torch

    from alignlab.outer.uddia import answer_states, attribute_logits

    with torch.no_grad():
        scores = [torch.sigmoid(attribute_logits(probe, answer_states(
            model, output.prompt_ids[lo:lo + 64], [c or [empty_id] for c in output.completion_ids[lo:lo + 64]])[0]))
            for lo in range(0, len(output.prompt_ids), 64)]
    return float(torch.cat(scores).mean())


def probe_rows(pairs_path: str, limit: int | None, kb=None) -> list[dict[str, Any]]:
    """Both answers of the first ``limit`` pairs, each labelled 1 when the judge finds an insult or a stereotype
    (``kb``: the world's knowledge base, needed for worlds other than the default)."""
    from alignlab.core.readers import read_records
    from alignlab.world.judge import as_world_prompt, score

    rows = []
    for pair in read_records(pairs_path, "pair", limit=limit):
        for answer in (pair.chosen, pair.rejected):
            verdict = score(as_world_prompt(pair.prompt, kb), answer, kb=kb)
            rows.append({"prompt": pair.prompt, "answer": answer,
                         "label": int(bool(verdict.toxicity) or bool(verdict.bias))})
    return rows


def bench_uddia(config: UDDIABenchConfig) -> dict[str, Any]:
    """Fit the probe, decode the held-out prompts plainly and with UDDIA per seed; write results.json."""
    from dataclasses import replace

    import torch

    from alignlab.core.generation import GenerationConfig, encode_prompts, generate
    from alignlab.core.models import load_causal_lm, load_tokenizer
    from alignlab.core.provenance import write_result
    from alignlab.outer.uddia import answer_states, fit_attribute_probe, uddia_generate
    from alignlab.world.base_model import BaseModelConfig, build_base_model
    from alignlab.world.build import build_world
    from alignlab.world.datasets import World, load_prompts
    from alignlab.world.evaluate import evaluate_responses

    out = Path(config.output)
    world = build_world(config.world_dir, seed=config.world_seed, verbose=False)
    base_path = config.base_model or str(build_base_model(world, BaseModelConfig()))
    tokenizer = load_tokenizer(base_path)
    model = load_causal_lm(base_path).eval()
    kb = World(world.seed, world.size).kb
    probe = fit_attribute_probe(model, tokenizer, probe_rows(str(world.datasets["pairs_train"]), config.probe_pairs,
                                                             kb))
    held_out = probe_rows(str(world.datasets["pairs_eval"]), None, kb)
    with torch.no_grad():
        ids = encode_prompts(tokenizer, [r["prompt"] for r in held_out])
        answers = [tokenizer(r["answer"], add_special_tokens=False)["input_ids"] for r in held_out]
        pooled = torch.cat([answer_states(model, ids[lo:lo + 64], answers[lo:lo + 64])[0]
                            for lo in range(0, len(ids), 64)])
    labels = torch.tensor([r["label"] for r in held_out], dtype=torch.float32)
    probe_accuracy = probe.accuracy(pooled, labels)
    print(f"[uddia] probe held-out accuracy {probe_accuracy:.3f} on {len(held_out)} answers", flush=True)

    prompts = load_prompts(world.datasets["prompts_eval"]) * config.eval_samples
    messages = [p.messages for p in prompts]
    runs = []
    for seed in config.seeds:
        gen = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=1.0, seed=seed)
        plain = generate(model, tokenizer, messages, gen)
        decoded = {"plain decoding": plain,
                   "UDDIA": uddia_generate(model, tokenizer, messages, probe, replace(config.uddia, generation=gen))}
        if config.resample_control:
            decoded[RESAMPLE] = uddia_generate(model, tokenizer, messages, probe,
                                               replace(config.uddia, generation=gen, lr=0.0))
        rows = {}
        for name, output in decoded.items():
            scores = evaluate_responses(prompts, output.texts)
            rows[name] = {**{r: scores[r] for r in RATES}, "stderr": {r: scores["stderr"].get(r) for r in RATES},
                          "tokens_per_s": output.num_tokens / max(output.seconds, 1e-9), "seconds": output.seconds}
            print(f"[uddia] seed {seed} {name}: " + ", ".join(f"{r} {rows[name][r]:.3f}" for r in RATES)
                  + f", {rows[name]['tokens_per_s']:.0f} tokens/s", flush=True)
            if name != "plain decoding":
                rows[name].update(interventions=output.interventions / len(prompts), redos=output.redos / len(prompts),
                                  attribute=sum(output.attribute) / len(output.attribute))
        rows["plain decoding"]["attribute"] = mean_attribute(model, probe, plain, tokenizer.eos_token_id)
        runs.append({"seed": seed, "rows": rows})
    result = {"summary": summarise(runs, (*RATES, "attribute", "tokens_per_s", "seconds", "interventions", "redos")), "runs": runs,
              "probe_accuracy": probe_accuracy, "probe_held_out_answers": len(held_out),
              "probe_positive_rate": float(labels.mean()), "base_model": base_path}
    write_result(out / "results.json", result, seed=config.seeds, config=config)
    return result
