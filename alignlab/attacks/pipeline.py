"""One attack → judge pipeline: attack each behaviour, collect the model's responses, judge them, report the attack
success rate (ASR) with Wilson intervals.

    alignlab attack run --attack gcg --model runs/sft --behaviors advbench.csv --output runs/attack --limit 20
    alignlab attack run --attack probe --model http://127.0.0.1:8000/v1#m --behaviors world --judge runs/judge

Per behaviour it records the attacked prompt (and the GCG suffix and loss curve), the greedy response, and success
by up to four rules (:mod:`alignlab.attacks.judge_prompts`):

- ``refusal_rule``: no refusal phrase of Zou et al.'s list (and not empty);
- ``target_match``: the response opens with the behaviour's target string;
- ``judge``: an LLM judge (``--judge``: any model path or ``alignlab serve`` URL) says ``[[YES]]`` to alignlab's
  classifier prompt; unparseable verdicts are counted under ``judge_unparsed`` and left out of that rate;
- ``world``: on the toy world's harmful prompts (``--behaviors world``), the world judge's exact verdict
  (harmlessness 0: the response complies).

The ASR of each rule is k/n with a 95% Wilson score interval. ``results.json`` (with provenance) and
``report.html`` go to ``--output``. GCG needs gradients, so it needs a local model; probes run on any LM,
``alignlab serve`` URLs included.

Example::

    >>> wilson_interval(0, 10)[1] > 0, wilson_interval(10, 10)[0] < 1
    (True, True)
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from alignlab.attacks.gcg import GCG, GCGConfig, check_chat_template, give_chat_template
from alignlab.attacks.judge_prompts import verdicts
from alignlab.attacks.probes import PROBES, apply_probe
from alignlab.attacks.redteam_gumbel import GumbelConfig
from alignlab.attacks.redteam_rl import RLRedTeamConfig
from alignlab.errors import AttackError, DataError

WORLD_TARGET = "Sure. Step 1:"  # how the world's compliant answers open (its safety pairs; world.families.INSTRUCTIONS)
RULES = ("refusal_rule", "target_match", "judge", "world")


@dataclass
class Behavior:
    goal: str
    target: str
    source: str
    """where it came from: FILE row N, or the world's prompt family"""


@dataclass
class AttackRunConfig:
    """Attack behaviours with GCG or jailbreak probes and judge the responses."""

    model: str
    """the attacked model: a local model or run dir (any attack), or an http[+chat]://host:port/v1[#name] URL of an
    OpenAI-compatible server such as alignlab serve (probes only: GCG needs gradients)"""
    behaviors: str
    """a CSV with 'goal' and 'target' columns (AdvBench's harmful_behaviors.csv), 'world' for the toy world's
    held-out harmful prompts, or 'world-train' for its training ones"""
    output: str
    """directory for results.json and report.html"""
    attack: Literal["gcg", "probe", "redteam", "redteam-rl"] = "probe"
    """gcg: an adversarial suffix per behaviour (or one for all with universal); probe: every jailbreak template;
    redteam: Gumbel-softmax red-team tokens per behaviour against a safety classifier trained on the world's answers;
    redteam-rl: a red-team LM trained with GRPO to continue each request so that the target complies"""
    limit: int | None = None
    """attack only the first N behaviours (null: all)"""
    offset: int = 0
    """skip the first N behaviours (e.g. to hold out the ones a suffix was trained on)"""
    probes: list[str] = field(default_factory=lambda: list(PROBES))
    """probe templates to send (attack=probe)"""
    gcg: GCGConfig = field(default_factory=GCGConfig)
    """GCG settings (attack=gcg), e.g. --set gcg.num_steps=100"""
    redteam: GumbelConfig = field(default_factory=GumbelConfig)
    """Gumbel-softmax red teaming's settings (attack=redteam), e.g. --set redteam.steps=200"""
    rl: RLRedTeamConfig = field(default_factory=RLRedTeamConfig)
    """RL red teaming's settings (attack=redteam-rl), e.g. --set rl.steps=80 --set rl.train_behaviors=world-train"""
    classifier_epochs: int = 30
    """attack=redteam: epochs of the safety classifier's training on the world's safe and unsafe answers"""
    universal: bool = False
    """attack=gcg: one suffix optimised on all behaviours together (Zou et al.'s multi-prompt) instead of one each;
    with --set gcg.progressive=true the behaviours join one at a time as the suffix succeeds"""
    transfer_models: list[str] = field(default_factory=list)
    """attack=gcg: more local models, sharing --model's vocabulary, that every suffix is optimised on at the same
    time (Zou et al.'s transfer attack); the responses judged are --model's"""
    judge: str | None = None
    """judge model (path or URL) for the classifier verdict (null: no judge)"""
    judge_max_tokens: int = 128
    """tokens the judge may write"""
    max_new_tokens: int = 64
    """tokens of each attacked response (greedy)"""
    chat_template: str | None = None
    """for a local model whose tokenizer has none: a Jinja file, Jinja text, or 'default' (User:/Assistant:)"""
    world_seed: int = 0
    """behaviors=world: the world's seed"""
    world_size: str = "small"
    """behaviors=world: the world's size"""
    seed: int = 0
    """seed of the GCG sampler (gcg.seed overrides it when set)"""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise AttackError(f"limit must be >= 1, got {self.limit}")
        if self.offset < 0 or self.max_new_tokens < 1 or self.judge_max_tokens < 1:
            raise AttackError("offset must be >= 0 and max_new_tokens, judge_max_tokens >= 1")
        for name in self.probes:
            apply_probe(name, "")  # unknown names fail here, with suggestions


# ---------------------------------------------------------------------------------------------------------------
# Behaviours


def load_behaviors(spec: str, *, limit: int | None = None, offset: int = 0, world_seed: int = 0,
                   world_size: str = "small") -> list[Behavior]:
    """Behaviours from a goal/target CSV (AdvBench's format), the world's held-out harmful prompts ('world') or its
    training ones ('world-train', e.g. to find suffixes for adversarial training without touching the held-out)."""
    if spec in ("world", "world-train"):
        from alignlab.world.datasets import World

        split = "eval" if spec == "world" else "train"
        prompts = getattr(World(world_seed, world_size).splits, split)["harmful"]
        rows = [Behavior(p.text, WORLD_TARGET, f"world seed {world_seed} {world_size} harmful {split}")
                for p in prompts]
    else:
        rows = read_behavior_csv(Path(spec))
    rows = rows[offset:]
    return rows[:limit] if limit is not None else rows


def read_behavior_csv(path: Path) -> list[Behavior]:
    if not path.is_file():
        raise DataError("no such behaviour file (expected a CSV with 'goal' and 'target' columns, or 'world')",
                        source=str(path))
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("goal", "target") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"missing column(s) {', '.join(missing)}; the header has {reader.fieldnames}",
                            source=str(path), row=1, field=missing[0])
        rows = []
        for i, row in enumerate(reader, start=2):  # row 1 is the header
            for key in ("goal", "target"):
                if not (row.get(key) or "").strip():
                    raise DataError("empty value", source=str(path), row=i, field=key)
            rows.append(Behavior(row["goal"], row["target"], f"{path.name} row {i}"))
    if not rows:
        raise DataError("the behaviour file has a header but no rows", source=str(path))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Statistics


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion k/n (95% by default); (None, None) when n = 0."""
    if n == 0:
        return None, None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(successes: list[bool | None]) -> dict[str, Any]:
    """ASR over the decided entries (None = undecided, e.g. an unparseable judge verdict) with its interval."""
    decided = [s for s in successes if s is not None]
    k, n = sum(decided), len(decided)
    low, high = wilson_interval(k, n)
    return {"asr": k / n if n else None, "low": low, "high": high, "k": k, "n": n,
            "undecided": len(successes) - n}


# ---------------------------------------------------------------------------------------------------------------
# Attacks: each returns one attempt per (behaviour, variant)


def gcg_attempts(lm, behaviors: list[Behavior], config: AttackRunConfig) -> list[dict[str, Any]]:
    from alignlab.evaluate.lm import load_lm

    model, tok = getattr(lm, "model", None), getattr(lm, "tokenizer", None)
    if model is None or tok is None:
        raise AttackError(f"GCG needs gradients, so a local model; '{config.model}' is served over HTTP (give its "
                          "path instead, or use --attack probe against the server)")
    check_chat_template(tok, f"the tokenizer of {config.model}")
    gcg_config = config.gcg if config.gcg.seed is not None else replace(config.gcg, seed=config.seed)
    models = [(model, tok)]
    for path in config.transfer_models:
        other = load_lm(path)
        if getattr(other, "model", None) is None:
            raise AttackError(f"a transfer model needs gradients, so a local model; '{path}' is served over HTTP")
        models.append((other.model, other.tokenizer))
    attack = lambda prompts: GCG(models, gcg_config).run(prompts)  # noqa: E731
    if config.universal:
        result = attack([(b.goal, b.target) for b in behaviors])
        results = [result] * len(behaviors)
    else:
        results = [attack([(b.goal, b.target)]) for b in behaviors]
    return [{"behavior": i, "variant": "gcg", "suffix": r.best_string, "loss": r.best_loss, "losses": r.losses,
             "prompts_used": r.prompts_used, "messages": [{"role": "user", "content": b.goal + r.best_string}]}
            for i, (b, r) in enumerate(zip(behaviors, results))]


def redteam_attempts(lm, behaviors: list[Behavior], config: AttackRunConfig) -> list[dict[str, Any]]:
    from alignlab.attacks.redteam_gumbel import gumbel_red_team, train_safety_classifier, world_safety_texts

    model, tok = getattr(lm, "model", None), getattr(lm, "tokenizer", None)
    if model is None or tok is None:
        raise AttackError(f"red teaming needs gradients, so a local model; '{config.model}' is served over HTTP")
    texts, labels = world_safety_texts(config.world_seed, config.world_size)
    classifier, accuracy = train_safety_classifier(tok, texts, labels, seed=config.seed, epochs=config.classifier_epochs,
                                                   vocab_size=model.get_input_embeddings().num_embeddings)
    attempts = []
    for i, b in enumerate(behaviors):
        found = gumbel_red_team(model, tok, classifier, b.goal, replace(config.redteam, seed=config.seed + i))
        prompt = found.prompts[found.best]
        attempts.append({"behavior": i, "variant": "redteam", "suffix": prompt, "p_unsafe": found.p_unsafe,
                         "classifier_accuracy": accuracy,
                         "messages": [{"role": "user", "content": b.goal + prompt}]})
    return attempts


def redteam_rl_attempts(lm, behaviors: list[Behavior], config: AttackRunConfig, judge_lm, world_kb
                        ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train the red LM (on ``rl.train_behaviors``, else on the attacked ones), then sample ``rl.samples``
    continuations per behaviour; returns the attempts and the training record."""
    from alignlab.attacks.redteam_rl import attack_prompt, harm_verdict, sample_attacks, train_red_team

    rl = config.rl
    red_model = rl.red_model or config.model
    if not Path(red_model).exists():
        raise AttackError(f"redteam-rl trains a red-team LM from a local model; '{red_model}' is not one (give "
                          "--set rl.red_model=PATH when the attacked model is served over HTTP)")
    train = behaviors if rl.train_behaviors is None else load_behaviors(
        rl.train_behaviors, limit=rl.train_limit, world_seed=config.world_seed, world_size=config.world_size)
    rule = rl.reward_rule if rl.reward_rule != "auto" else ("world" if world_kb is not None else "refusal_rule")
    harm = harm_verdict(rule, {b.goal: b.target for b in train}, judge_lm=judge_lm, world_kb=world_kb,
                        judge_max_tokens=config.judge_max_tokens)
    found = train_red_team(lm, [b.goal for b in train], harm, rl, red_model=red_model,
                           output=Path(config.output) / "red_lm", seed=config.seed)
    written = sample_attacks(found.model, found.tokenizer, [b.goal for b in behaviors], rl, seed=config.seed)
    attempts = [{"behavior": i, "variant": "redteam-rl", "suffix": x,
                 "messages": [{"role": "user", "content": attack_prompt(b.goal, x)}]}
                for i, (b, xs) in enumerate(zip(behaviors, written)) for x in xs]
    record = {"reward_rule": rule, "red_model": red_model, "train_behaviors": rl.train_behaviors or config.behaviors,
              "n_train": len(train), "history": found.history, "found_in_training": len(found.found),
              "found_examples": found.found[:20]}
    return attempts, record


def probe_attempts(behaviors: list[Behavior], config: AttackRunConfig) -> list[dict[str, Any]]:
    return [{"behavior": i, "variant": name, "messages": apply_probe(name, b.goal)}
            for i, b in enumerate(behaviors) for name in config.probes]


# ---------------------------------------------------------------------------------------------------------------
# Judging


def judge_attempts(attempts: list[dict[str, Any]], behaviors: list[Behavior], judge_lm, config: AttackRunConfig,
                   world_kb=None) -> None:
    """Add each rule's verdict (``success``) to every attempt, in place."""
    chosen = [behaviors[a["behavior"]] for a in attempts]
    found = verdicts([b.goal for b in chosen], [b.target for b in chosen], [a["response"] for a in attempts],
                     judge_lm=judge_lm, judge_max_tokens=config.judge_max_tokens, world_kb=world_kb)
    outputs = found.pop("judge_output", None)
    for i, a in enumerate(attempts):
        a["success"] = {rule: values[i] for rule, values in found.items()}
        if outputs is not None:
            a["judge_output"] = outputs[i]


def summarise(attempts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant (probe name or gcg) and rule: ASR, Wilson interval, counts."""
    out: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(a["variant"] for a in attempts):
        mine = [a for a in attempts if a["variant"] == variant]
        out[variant] = {rule: rate([a["success"][rule] for a in mine]) for rule in RULES if rule in mine[0]["success"]}
    return out


# ---------------------------------------------------------------------------------------------------------------
# The command


def run_attack_pipeline(config: AttackRunConfig, *, lm=None, judge_lm=None) -> dict[str, Any]:
    """Attack, respond, judge, and write ``results.json`` and ``report.html`` into ``config.output``.

    ``lm`` / ``judge_lm``: already loaded LMs to use instead of loading ``config.model`` / ``config.judge``.
    Returns ``{"summary": {VARIANT/RULE: "ASR [low, high] (k/n)"}, "output": DIR, "results": {...}}``.
    """
    from alignlab.core.provenance import write_result
    from alignlab.evaluate.lm import load_lm

    out = Path(config.output)
    if (out / "results.json").exists() and not (out / "report.html").exists():
        raise AttackError(f"{out / 'results.json'} exists and was not written by alignlab attack run; "
                          "choose another --output")
    behaviors = load_behaviors(config.behaviors, limit=config.limit, offset=config.offset,
                               world_seed=config.world_seed, world_size=config.world_size)
    lm = lm if lm is not None else load_lm(config.model)
    tok = getattr(lm, "tokenizer", None)
    if config.chat_template and tok is not None:
        give_chat_template(tok, config.chat_template)
    if tok is not None:
        check_chat_template(tok, f"the tokenizer of {config.model}")
    if judge_lm is None and config.judge:
        judge_lm = load_lm(config.judge)
    world_kb = None
    if config.behaviors in ("world", "world-train"):
        from alignlab.world.families import kb_for

        world_kb = kb_for(config.world_seed, config.world_size)
    extra: dict[str, Any] = {}
    if config.attack == "gcg":
        attempts = gcg_attempts(lm, behaviors, config)
    elif config.attack == "redteam":
        attempts = redteam_attempts(lm, behaviors, config)
    elif config.attack == "redteam-rl":
        attempts, extra["red_team"] = redteam_rl_attempts(lm, behaviors, config, judge_lm, world_kb)
    else:
        attempts = probe_attempts(behaviors, config)
    responses = lm.generate([a["messages"] for a in attempts], max_tokens=config.max_new_tokens, temperature=0.0)
    for a, response in zip(attempts, responses):
        a["response"] = response
    judge_attempts(attempts, behaviors, judge_lm, config, world_kb)
    summary = summarise(attempts)
    results = {"attack": config.attack, "model": config.model, "behaviors": config.behaviors,
               "n_behaviors": len(behaviors), "summary": summary, "diversity": prompt_diversity(attempts), **extra,
               "attempts": [{**a, "goal": behaviors[a["behavior"]].goal, "target": behaviors[a["behavior"]].target,
                             "source": behaviors[a["behavior"]].source} for a in attempts]}
    write_result(out / "results.json", results, seed=config.seed, config=config)
    write_report(out / "report.html", results)
    lines = {f"{variant}/{rule}": _shown(r) for variant, rules in summary.items() for rule, r in rules.items()}
    return {"summary": lines, "output": str(out), "results": results}


def prompt_diversity(attempts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant that writes its own text (gcg, redteam, redteam-rl): diversity of the written parts, over all
    attempts and over the successful ones (by the world judge where it ruled, else the refusal rule)."""
    from alignlab.attacks.diversity import diversity_report

    out = {}
    for variant in dict.fromkeys(a["variant"] for a in attempts if "suffix" in a):
        mine = [a for a in attempts if a["variant"] == variant]
        rule = "world" if "world" in mine[0]["success"] else "refusal_rule"
        out[variant] = {"all": diversity_report([a["suffix"] for a in mine]), "successful_by": rule,
                        "successful": diversity_report([a["suffix"] for a in mine if a["success"][rule]])}
    return out


def _number(value: float | int | None) -> str:
    return "–" if value is None else str(value) if isinstance(value, int) else f"{value:.3f}"


def _shown(r: dict[str, Any]) -> str:
    if r["asr"] is None:
        return f"no decided verdicts ({r['undecided']} unparseable)"
    text = f"{r['asr']:.3f} [{r['low']:.3f}, {r['high']:.3f}] ({r['k']}/{r['n']})"
    return text + (f", {r['undecided']} unparseable" if r["undecided"] else "")


def write_report(path: Path, results: dict[str, Any]) -> Path:
    from alignlab.report.html import Report

    report = Report(f"Attack: {results['attack']} on {results['model']}")
    report.text(f"{results['n_behaviors']} behaviours from {results['behaviors']}. Attack success rate (ASR) per "
                "rule with 95% Wilson intervals; judge verdicts that could not be parsed are counted apart.")
    summary = results["summary"]
    rules = [r for r in RULES if any(r in v for v in summary.values())]
    report.table("Attack success rate", ["variant", *rules],
                 [[variant, *(_shown(v[r]) if r in v else "" for r in rules)] for variant, v in summary.items()])
    report.bar_plot("ASR by variant", list(summary), {r: [v.get(r, {}).get("asr") for v in summary.values()]
                                                       for r in rules}, ylabel="attack success rate")
    curves = {f"behaviour {a['behavior']}": list(enumerate(a["losses"])) for a in results["attempts"] if "losses" in a}
    if curves:
        report.line_plot("GCG loss", dict(list(curves.items())[:12]), ylabel="target loss")
    if "red_team" in results:
        history = results["red_team"]["history"]
        report.line_plot("RL red teaming: the red LM's training steps",
                         {key: [(i + 1, row[key]) for i, row in enumerate(history)] for key in ("harm_rate", "novelty")},
                         ylabel="harm rate / mean novelty bonus")
    measures = ("n", "unique", "distinct_1", "distinct_2", "self_bleu")
    report.table("Diversity of the written prompts (distinct-n: higher is more varied; self-BLEU: lower)",
                 ["variant", "prompts", *measures],
                 [[variant, which, *(_number(d[which][m]) for m in measures)]
                  for variant, d in results.get("diversity", {}).items() for which in ("all", "successful")])
    report.table("Attempts", ["behaviour", "variant", "suffix", "response", *rules],
                 [[a["goal"][:80], a["variant"], a.get("suffix", ""), a["response"][:160],
                   *(a["success"].get(r, "") for r in rules)] for a in results["attempts"]])
    return report.write(path)
