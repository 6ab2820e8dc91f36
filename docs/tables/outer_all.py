"""Every outer-alignment method side by side (docs/results/outer/all/world<W>-seed<S>.json, the results.json that
`alignlab bench outer --world` wrote per seed), and small-data SFT by selector (docs/results/outer/selection.json,
`alignlab bench selection --world`)."""

from __future__ import annotations

from _common import RESULTS, cite, fmt, load, mean_se

RATES = ("true_reward", "helpfulness", "honesty", "harmlessness", "toxicity", "bias")
# (key, header, digits) after the rates
EXTRA = (("kl_to_sft", "KL/answer", 2), ("kl_per_token", "KL/token", 3), ("train_cpu_seconds", "train CPU-s", 0),
         ("added_generation_cpu_seconds", "added gen. CPU-s", 1))


def _files(world: int) -> list[str]:
    return sorted(p.relative_to(RESULTS).as_posix() for p in (RESULTS / "outer" / "all").glob(f"world{world}-seed*.json"))


def _cell(values: list, digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean, se = mean_se(values)
    return fmt(mean, se if len(values) > 1 else None, digits)


def side_by_side(world: int = 0) -> str:
    """One row per method: each column's mean ± standard error over seeds; the gain is the per-seed true-reward
    difference with the SFT model paired by prompt, averaged over seeds (one seed: ± its paired standard error)."""
    files = _files(world)
    if not files:
        return f"*No `alignlab bench outer` run on world seed {world} is committed under `docs/results/outer/all/`.*"
    runs = [{r["method"]: r for r in load(f)["results"]["rows"]} for f in files]
    header = ["method", *(r.replace("_", " ") for r in RATES), "gain vs SFT", *(h for _, h, _ in EXTRA)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name in runs[0]:
        rows = [run[name] for run in runs if name in run]
        gains = [r["gain_vs_sft"] for r in rows]
        gain = (_cell(gains, 3) if len(rows) > 1 else fmt(gains[0], rows[0]["gain_stderr"], 3))
        cells = [_cell([r[k] for r in rows], 3) for k in RATES] + [gain]
        cells += [_cell([r.get(k) for r in rows], digits) for k, _, digits in EXTRA]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    config = load(files[0])["config"]
    minutes = ", ".join(f"{load(f)['results']['cpu_seconds'] / 60:.1f}" for f in files)
    note = (f"\n\nMean ± standard error over {len(files)} seed(s) (world seed {world}); {config['max_steps']} steps per "
            f"method, {config['eval_samples']} answers per held-out prompt; SFT model `{load(files[0])['results']['sft_model']}`. "
            f"KL is the Monte Carlo estimate on the row's own answers; – where the decoded distribution is not one "
            f"model's (UDDIA, DSP). Each seed's whole run took {minutes} CPU-minutes.")
    return "\n".join(lines) + note + "\n\n" + "\n\n".join(cite(f) for f in files)


def selection() -> str:
    relative = "outer/selection.json"
    if not (RESULTS / relative).exists():
        return "*`alignlab bench selection --world` has not been run into `docs/results/outer/selection.json` yet.*"
    rows = load(relative)["results"]["rows"]
    header = ["share", "selector", "examples", *(r.replace("_", " ") for r in RATES)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for r in rows:
        cells = ["–" if r[k] is None else fmt(r[k], r[f"{k}_se"]) for k in RATES]
        lines.append(f"| {r['fraction']:g} | {r['selector']} | {r['examples']} | " + " | ".join(cells) + " |")
    seeds = max(r["seeds"] for r in rows)
    return "\n".join(lines) + f"\n\nMean ± standard error over {seeds} seeds.\n\n{cite(relative)}"


BLOCKS = {"outer-all": side_by_side, "outer-all-world1": lambda: side_by_side(1), "outer-selection": selection}
