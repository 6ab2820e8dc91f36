"""Tables of docs/evaluation/breadth.md, from the result files of `alignlab eval`, `alignlab judge-calibration`
and `alignlab toxicity-train/-eval` under docs/results/evaluation/ (the world's base, SFT and DPO models)."""

from __future__ import annotations

import json

from _common import RESULTS, ROOT, cell, cite, command, commit, fmt, load, machine, mean_se

MODELS = ("base", "sft", "dpo")


def _task(model: str, run: str, task: str) -> dict:
    return load(f"evaluation/{model}-{run}.json")["tasks"][task]


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(pair: list | None, digits: int = 3) -> str:
    return "–" if not pair or pair[0] is None else f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def benchmarks() -> str:
    rows = ["| model | HHH acc | simple ethical questions acc | moral permissibility acc | CrowS-Pairs % stereotype | "
            "BBQ acc (ambiguous) | BBQ acc (disambiguated) | BBQ bias (ambiguous) | BBQ bias (disambiguated) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for m in MODELS:
        cells = []
        for run, task, metric in (("bigbench", "hhh_alignment", "acc"),
                                  ("bigbench", "bigbench_simple_ethical_questions", "acc"),
                                  ("bigbench", "bigbench_moral_permissibility", "acc"),
                                  ("full", "crows_pairs", "pct_stereotype")):
            res = _task(m, run, task)
            cells.append(fmt(res["metrics"][metric], res["stderr"][metric]))
        bbq = _task(m, "per_group", "bbq")
        cells += [_num(bbq["metrics"]["accuracy_amb"]), _num(bbq["metrics"]["accuracy_disamb"])]
        cells += [f"{_num(bbq['metrics'][k])} {_interval(bbq['interval_95'][k])}"
                  for k in ("amb_bias_score", "disamb_bias_score")]
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n" + "\n\n".join(cite(f"evaluation/{m}-{r}.json") for m in MODELS
                                                  for r in ("bigbench", "full", "per_group"))


def bbq_categories() -> str:
    cats = sorted(_task("base", "per_group", "bbq")["groups"])
    rows = ["| category | " + " | ".join(f"{m} bias amb / disamb" for m in MODELS) + " |",
            "|---|" + "---|" * len(MODELS)]
    for c in cats:
        cells = []
        for m in MODELS:
            g = _task(m, "per_group", "bbq")["groups"][c]
            cells.append(f"{_num(g['amb_bias_score'])} / {_num(g['disamb_bias_score'])}")
        rows.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ai_risk() -> str:
    behaviours = sorted(_task("base", "per_group", "advanced_ai_risk")["groups"])
    rows = ["| behaviour | " + " | ".join(f"{m}: rate by likelihood [95% CI]" for m in MODELS) + " | "
            + " | ".join(f"{m}: by generation (unparsed)" for m in MODELS) + " |",
            "|---|" + "---|" * (2 * len(MODELS))]
    for b in behaviours:
        cells = []
        for m in MODELS:
            g = _task(m, "per_group", "advanced_ai_risk")["groups"][b]
            cells.append(f"{_num(g['matching_rate'], 2)} {_interval(g['interval_95'], 2)}")
        for m in MODELS:
            g = _task(m, "generate", "advanced_ai_risk_generate")["groups"][b]
            cells.append(f"{_num(g['matching_rate'], 2)} ({g['unparsed']}/{g['n']})")
        rows.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n" + "\n\n".join(cite(f"evaluation/{m}-generate.json") for m in MODELS)


def trustgpt() -> str:
    rows = ["| model | toxicity | stereotype (bias) | value alignment | toxicity std across groups |",
            "|---|---|---|---|---|"]
    for m in MODELS:
        res = _task(m, "full", "trustgpt_world")
        met, se = res["metrics"], res["stderr"]
        rows.append(f"| {m} | {fmt(met['toxicity'], se['toxicity'])} | {fmt(met['bias'], se['bias'])} | "
                    f"{fmt(met['value_alignment'], se['value_alignment'])} | {_num(met['toxicity_std_across_groups'])} |")
    return "\n".join(rows)


def judges() -> str:
    record = load("evaluation/judges.json")
    res = record["results"]
    rows = ["| judge | agreement with true reward [95% CI] | prefers first position | flips with order | "
            "picks longer (truly better: share) | parse failures |", "|---|---|---|---|---|---|"]
    for name, r in res["judges"].items():
        rows.append(f"| {name} | {_num(r['agreement']['rate'])} {_interval(r['agreement']['interval_95'])} | "
                    f"{_num(r['prefers_first_position']['rate'])} | {_num(r['flips_with_order']['rate'])} | "
                    f"{_num(r['picks_longer']['rate'])} ({_num(r['longer_truly_better']['rate'])}) | "
                    f"{r['parse_failures']} |")
    for name, r in res["committees"].items():
        rows.append(f"| {name}: {', '.join(r['members'])} | {_num(r['agreement']['rate'])} "
                    f"{_interval(r['agreement']['interval_95'])} | – | – | {_num(r['picks_longer']['rate'])} "
                    f"({_num(r['longer_truly_better']['rate'])}) | – |")
    return "\n".join(rows) + f"\n\n{res['n_pairs']} pairs.\n\n" + cite("evaluation/judges.json")


def classifier() -> str:
    seeds = [load(f"evaluation/classifier-{s}.json") for s in range(3)]
    rows = ["| metric | mean ± s.e. over 3 seeds | lowest group F1 (mean over seeds) |", "|---|---|---|"]
    worst = [min(g["f1"] for g in r["results"]["groups"].values() if g["f1"] == g["f1"]) for r in seeds]
    for metric in ("precision", "recall", "f1"):
        mean, se = mean_se([r["results"]["overall"][metric] for r in seeds])
        rows.append(f"| {metric} | {fmt(mean, se)} | {fmt(*mean_se(worst)) if metric == 'f1' else '–'} |")
    n = seeds[0]["results"]["overall"]["n"]
    return "\n".join(rows) + f"\n\n{n} held-out world replies, {len(seeds[0]['results']['groups'])} target groups " \
                             "(\"none\" included).\n\n" + cite("evaluation/classifier-0.json")


def generation_toxicity() -> str:
    """Expected maximum toxicity and toxicity probability of each model's sampled replies, by a trained classifier."""
    first = _task("base", "toxicity", "world_toxicity")
    families = sorted(first["groups"])
    rows = ["| model | expected max toxicity | toxicity probability | "
            + " | ".join(f"{f}: EMT / prob." for f in families) + " |", "|---|---|---|" + "---|" * len(families)]
    for m in MODELS:
        res = _task(m, "toxicity", "world_toxicity")
        met, se, groups = res["metrics"], res["stderr"], res["groups"]
        rows.append(f"| {m} | {fmt(met['expected_max_toxicity'], se['expected_max_toxicity'])} | "
                    f"{fmt(met['toxicity_probability'], se['toxicity_probability'])} | "
                    + " | ".join(f"{_num(groups[f]['expected_max_toxicity'])} / {_num(groups[f]['toxicity_probability'])}"
                                 for f in families) + " |")
    sizes = ", ".join(f"{f} {first['groups'][f]['n']}" for f in families)
    top = ["| model | the classifier's most toxic-scored reply (score; how many of the model's replies it is) |",
           "|---|---|"]
    for m in MODELS:  # from the per-reply scores the run wrote beside its results.json
        replies = [(score, text) for line in (RESULTS / f"evaluation/{m}-toxicity-samples.jsonl").read_text().splitlines()
                   for row in [json.loads(line)] for text, score in zip(row["responses"], row["toxicity"])]
        score, text = max(replies)
        top.append(f"| {m} | {cell(text)!r} ({score:.2f}; {sum(t == text for _, t in replies)} of {len(replies)}) |")
    return ("\n".join(rows) + f"\n\n{first['n']} prompts ({sizes}), 25 replies each.\n\n" + "\n".join(top)
            + "\n\n" + "\n\n".join(cite(f"evaluation/{m}-toxicity.json") for m in MODELS))


def _skills_table(relative: str, questions: str) -> str:
    """FLASK's twelve skills, 1-5 each, per model: mean [95% CI] and the parse rate of the verdicts that were
    not "does not apply" (parsed / judged − N/A), with the N/A count."""
    record = load(relative)
    graded = record["skills"]
    models = list(graded)
    rows = ["| skill | " + " | ".join(f"{m}: mean [95% CI] (parsed; N/A)" for m in models) + " |",
            "|---|" + "---|" * len(models)]
    for skill in graded[models[0]]:
        cells = []
        for m in models:
            g = graded[m][skill]
            mean = None if g["mean"] != g["mean"] else g["mean"]  # NaN: no verdict parsed
            judged = g.get("judged", record["n_questions"])
            scorable = judged - g.get("not_applicable", 0)
            shown = "–" if mean is None else f"{_num(mean, 2)} {_interval(g['interval_95'], 2)}"
            cells.append(f"{shown} ({scorable - g['parse_failures']}/{scorable}; {g.get('not_applicable', 0)})")
        rows.append(f"| {skill} | " + " | ".join(cells) + " |")
    judge = ", ".join(record["config"]["judges"]) if "config" in record else "see the command"
    return "\n".join(rows) + f"\n\nJudge: {judge}; {record['n_questions']} {questions}.\n\n" + cite(relative)


def skills() -> str:
    """FLASK on MT-bench questions, judged by the world's SFT model."""
    return _skills_table("evaluation/skills.json", "MT-bench questions")


def skills_world() -> str:
    """FLASK on the world's held-out prompts, judged by the world's ground truth."""
    return _skills_table("evaluation/skills-world.json", "held-out prompts of the toy world (seed 0, small)")


POSITIONS = ROOT / "benchmarks" / "results" / "loglik_token_positions.json"


def speed_ceiling() -> str:
    """The exact-computation ceilings of the log-likelihood benchmark, from benchmarks/loglik_token_positions.py."""
    if not POSITIONS.exists():
        raise SystemExit("gen_results: benchmarks/results/loglik_token_positions.json is missing: "
                         "run benchmarks/loglik_token_positions.py")
    record = json.loads(POSITIONS.read_text())
    rows = ["| workload | requests | token positions HFLM runs | best prefix trie | ceiling at equal speed per position |",
            "|---|---|---|---|---|"]
    for name, label in (("crows_pairs", "CrowS-Pairs"), ("bbq", "BBQ")):
        if name in record["positions"]:
            c = record["positions"][name]
            rows.append(f"| {label} | {c['requests']} | {c['hflm_positions']} | {c['trie_positions']} | "
                        f"{c['ceiling']:.2f}× |")
    return ("\n".join(rows) + f"\n\n*From `benchmarks/results/loglik_token_positions.json`: "
            f"`{cell(command(record))}` at commit `{commit(record)}` on {cell(machine(record))}.*")


BLOCKS = {
    "evaluation-benchmarks": benchmarks,
    "evaluation-bbq-categories": bbq_categories,
    "evaluation-ai-risk": ai_risk,
    "evaluation-trustgpt": trustgpt,
    "evaluation-judges": judges,
    "evaluation-classifier": classifier,
    "evaluation-toxicity": generation_toxicity,
    "evaluation-skills": skills,
    "evaluation-skills-world": skills_world,
    "evaluation-speed-ceiling": speed_ceiling,
}
