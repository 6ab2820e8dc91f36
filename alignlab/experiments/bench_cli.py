"""``alignlab bench methods --world`` and ``alignlab bench online --world``: every offline or online method on
the toy world, one table each; ``alignlab bench selection --world``: small-data SFT by data selector;
``alignlab bench decoding --world``: decoding-time alignment of the frozen base model; ``alignlab bench rlsf
--world``: reward models from synthetic feedback; ``alignlab bench rules --world``: a Sparrow-style
rule-conditioned reward model and RL against it; ``alignlab bench sensei --world`` and ``alignlab bench uddia
--world``: SENSEI's heads and UDDIA-style decoding; ``alignlab bench findings --world``: contradicting facts and
simplified or delusive task definitions in SFT; ``alignlab bench ird --world``: inverse reward design;
``alignlab bench outer --world``: every outer-alignment method from one SFT model and one step budget;
``alignlab bench fdpg --world``: f-DPG's divergences from one SFT model, reward and diversity.

    alignlab bench methods --world [--methods dpo,kto,rrhf] [--sft-model PATH] [--output DIR]
                           [--max-steps N] [--config F.yaml] [--set key=value ...]
    alignlab bench online --world [--methods ppo,grpo] [--overoptimisation] [...]

Options are the fields of :class:`~alignlab.experiments.bench.BenchConfig` and
:class:`~alignlab.experiments.online_bench.OnlineBenchConfig` (``--help`` lists every key). Handlers import
the training code lazily so ``alignlab --help`` stays fast.
"""

from __future__ import annotations

import argparse

from alignlab.cli import add_config_command, parse_command_config

# Config keys every `alignlab bench` command has a flag for (help: the key's docstring).
FLAGS = ("world", "sft_model", "world_dir", "output", "max_steps", "seed")


def bench_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-commands of ``alignlab bench``."""
    bench = subparsers.add_parser("bench", help="compare methods on the toy world")
    return bench.add_subparsers(dest="bench_command", required=True)


def bench_config(cls: type, args: argparse.Namespace, flags: tuple[str, ...] = (), lists: tuple[str, ...] = ()):
    """The bench's config from its command line (a shortcut flag for each of FLAGS + ``flags`` the config has;
    ``methods`` and ``lists`` are repeatable list flags); the toy world must be asked for."""
    import dataclasses

    from alignlab.errors import ConfigError

    keys = {f.name for f in dataclasses.fields(cls)}
    config = parse_command_config(cls, args, flags=[f for f in FLAGS + flags if f in keys],
                                  lists=[k for k in ("methods", *lists) if k in keys])
    if not config.world:
        raise ConfigError(f"{args.config_command} needs --world (the toy world is the only benchmark data so far)")
    return config


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``alignlab bench methods`` and ``alignlab bench online``."""
    bench = bench_commands(subparsers)
    add_config_command(bench, "methods", _methods,
                       help="train each offline method from the same SFT model and compare ground-truth scores")
    add_config_command(bench, "online", _online,
                       help="train each online RL method from the same SFT model and compare ground-truth scores")
    add_config_command(bench, "decoding", _decoding,
                       help="steer the world's frozen base model at decoding time (DExperts, anti-expert re-ranking)")
    add_config_command(bench, "rlsf", _rlsf,
                       help="reward models from synthetic (by-construction) preferences against annotator labels")
    add_config_command(bench, "rules", _rules,
                       help="a rule-conditioned reward model from the world's rule-violation labels, then RL against it")
    add_config_command(bench, "findings", _findings,
                       help="SFT on facts that contradict the model's knowledge, and on simplified or delusive "
                            "task definitions, against plain SFT")
    add_config_command(bench, "ird", _ird,
                       help="inverse reward design: a proxy blind to one feature, planners on held-out prompts")
    add_config_command(bench, "blackbox", _blackbox,
                       help="black-box steering of frozen LMs: DSP hints and RL4F critiques against none")
    add_config_command(bench, "sensei", _sensei,
                       help="SENSEI's critic and actor heads on the world's SFT model against the SFT model, over seeds")
    add_config_command(bench, "uddia", _uddia,
                       help="UDDIA-style adaptive optimisation while decoding the world's base model, against plain "
                            "decoding, over seeds")
    add_config_command(bench, "outer", _outer,
                       help="every outer-alignment method from one SFT model and one step budget, one table")
    add_config_command(bench, "fdpg", _fdpg,
                       help="f-DPG under each f-divergence from one SFT model: true reward, KL and diversity")
    add_config_command(bench, "selection", _selection,
                       help="SFT on chosen fractions of the world's demonstrations: selectors against random")


def _methods(args: argparse.Namespace) -> None:
    from alignlab.experiments.bench import COLUMNS, BenchConfig, bench_methods, markdown_table

    config = bench_config(BenchConfig, args)
    rows = bench_methods(config)
    print(markdown_table(rows), end="")
    print(f"columns: {', '.join(COLUMNS)}; results.json, results.md and report.html in {config.output}")


def _online(args: argparse.Namespace) -> None:
    from alignlab.experiments.bench import markdown_table
    from alignlab.experiments.online_bench import OnlineBenchConfig, bench_online

    config = bench_config(OnlineBenchConfig, args, ("overoptimisation",))
    rows = bench_online(config)
    print(markdown_table(rows), end="")
    print(f"results.json and results.md in {config.output}")


def _outer(args: argparse.Namespace) -> None:
    from alignlab.experiments.outer_bench import COLUMNS, OuterBenchConfig, bench_outer

    config = bench_config(OuterBenchConfig, args)
    _print_rows(bench_outer(config), COLUMNS, width=18)
    print(f"results.json in {config.output}")


def _fdpg(args: argparse.Namespace) -> None:
    from alignlab.experiments.fdpg_bench import COLUMNS, FDPGBenchConfig, bench_fdpg

    config = bench_config(FDPGBenchConfig, args, lists=("divergences",))
    _print_rows(bench_fdpg(config), COLUMNS, width=12)
    print(f"results.json in {config.output}")


def _print_rows(rows: list[dict], columns: tuple[str, ...] | list[str], *, width: int) -> None:
    """One line per method: its name, then each column's value (– where the row has none)."""
    for row in rows:
        print(f"{row['method']:<{width}} "
              + ", ".join(f"{k} {'–' if row.get(k) is None else f'{row[k]:.3f}'}" for k in columns))


def _selection(args: argparse.Namespace) -> None:
    from alignlab.experiments.selection_bench import SelectionBenchConfig, bench_selection

    config = bench_config(SelectionBenchConfig, args, lists=("fractions", "selectors", "seeds"))
    for row in bench_selection(config):
        print(f"{row['fraction']:>5g} {row['selector']:<15} true reward {row['true_reward']:.3f}"
              + (f" ± {row['true_reward_se']:.3f}" if row["true_reward_se"] is not None else ""))
    print(f"results.json and report.html in {config.output}")


def _decoding(args: argparse.Namespace) -> None:
    from alignlab.experiments.decoding_bench import RATES, DecodingBenchConfig, bench_decoding

    config = bench_config(DecodingBenchConfig, args, lists=("alphas",))
    for row in bench_decoding(config):
        print(f"{row['rule']:<45} " + " ".join(f"{k} {row[k]:.3f}" for k in RATES))
    print(f"results.json and report.html in {config.output}")


def _rlsf(args: argparse.Namespace) -> None:
    from alignlab.experiments.rlsf_bench import RLSFBenchConfig, bench_rlsf

    config = bench_config(RLSFBenchConfig, args, lists=("seeds",))
    for key, value in bench_rlsf(config)["summary"].items():
        print(f"{key}: {value['mean']:.3f}" + (f" ± {value['se']:.3f}" if value["se"] is not None else ""))
    print(f"results.json in {config.output}")


def _rules(args: argparse.Namespace) -> None:
    from alignlab.experiments.rules_bench import RulesBenchConfig, bench_rules

    config = bench_config(RulesBenchConfig, args)
    result = bench_rules(config)
    for rule, accuracy in result["rule_accuracy"].items():
        before, after = result["violations_before"][rule]["rate"], result["violations_after"][rule]["rate"]
        print(f"{rule}\n    held-out accuracy {accuracy:.3f}; violations {before:.3f} -> {after:.3f}")
    print(f"results.json in {config.output}")


def _findings(args: argparse.Namespace) -> None:
    from alignlab.experiments.findings_bench import FindingsBenchConfig, bench_findings

    config = bench_config(FindingsBenchConfig, args, lists=("contradict_fractions", "definitions", "seeds"))
    result = bench_findings(config)
    for part, key in (("contradicting_facts", "contradict_fraction"), ("task_definitions", "definition")):
        for row in result[part]:
            print(f"{part} {key}={row[key]}: fact accuracy {row['fact_accuracy']:.3f}, "
                  f"true reward {row['true_reward']:.3f}")
    print(f"results.json in {config.output}")


def _ird(args: argparse.Namespace) -> None:
    from alignlab.experiments.ird_bench import IRDBenchConfig, bench_ird

    config = bench_config(IRDBenchConfig, args, lists=("blind_families", "blind_features", "seeds"))
    for planner, values in bench_ird(config)["summary"].items():
        print(f"{planner:<6} " + ", ".join(f"{k} {v['mean']:.3f}" for k, v in values.items()))
    print(f"results.json in {config.output}")


def _blackbox(args: argparse.Namespace) -> None:
    from alignlab.experiments.blackbox_bench import BlackboxBenchConfig, bench_blackbox

    config = bench_config(BlackboxBenchConfig, args, ("warm_start_steps",), lists=("seeds",))
    for method, part in bench_blackbox(config).items():
        for condition, values in part["summary"].items():
            if "true_reward" not in values:  # the training row
                continue
            print(f"{method} {condition:<24} true reward {values['true_reward']['mean']:.3f}"
                  + (f" ± {values['true_reward']['se']:.3f}" if values["true_reward"]["se"] is not None else ""))


def _sensei(args: argparse.Namespace) -> None:
    from alignlab.experiments.sensei_bench import RATES, SenseiBenchConfig, bench_sensei

    config = bench_config(SenseiBenchConfig, args, lists=("seeds", "strengths"))
    for name, values in bench_sensei(config)["summary"].items():
        print(f"{name:<26} " + ", ".join(f"{k} {values[k]['mean']:.3f}" for k in (*RATES, "kl_to_sft")))
    print(f"results.json in {config.output}")


def _uddia(args: argparse.Namespace) -> None:
    from alignlab.experiments.sensei_bench import RATES
    from alignlab.experiments.uddia_bench import UDDIABenchConfig, bench_uddia

    config = bench_config(UDDIABenchConfig, args, lists=("seeds",))
    for name, values in bench_uddia(config)["summary"].items():
        print(f"{name:<16} " + ", ".join(f"{k} {values[k]['mean']:.3f}" for k in (*RATES, "tokens_per_s")))
    print(f"results.json in {config.output}")
