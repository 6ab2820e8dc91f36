"""``alignlab attack mia|exposure|extract|invert``: thin layers over the privacy attacks' Python API.

    alignlab attack mia --model /work/models/demo/sft --target sft --output runs/mia
    alignlab attack exposure --defences none,dedup --output runs/exposure
    alignlab attack extract --models runs/exposure/none-seed0/model --output runs/extract
    alignlab attack invert --batch-sizes 1,2,4 --output runs/invert

Each command's options are the fields of its config (``MIAConfig``, ``ExposureConfig``, ``ExtractionConfig``,
``InversionConfig``); ``--help`` lists them, ``--config`` and ``--set key=value`` set any of them (lists of
numbers: ``--set seeds=[0,1,2]``). Heavy modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json

from alignlab.cli import add_config_command, parse_command_config


def _show(results: dict, output: str) -> None:
    print(json.dumps(results, indent=1, default=str)[:4000])
    print(f"results in {output}/results.json")


def run_mia_command(args: argparse.Namespace) -> None:
    from alignlab.attacks.privacy.mia import MIAConfig, run_mia

    config = parse_command_config(MIAConfig, args, flags=("model", "target", "reference", "n", "output", "seed"),
                                  lists=["scores"])
    _show(run_mia(config)["scores"], config.output)


def run_exposure_command(args: argparse.Namespace) -> None:
    from alignlab.attacks.privacy.exposure import ExposureConfig, run_exposure

    config = parse_command_config(ExposureConfig, args, flags=("output", "mia_n"), lists=["defences"])
    results = run_exposure(config)
    for run in results["runs"]:
        print(run["defence"], run["seed"], [(c["repeats"], round(c["exposure"], 2)) for c in run["canaries"]])
    print(f"results in {config.output}/results.json")


def run_extract_command(args: argparse.Namespace) -> None:
    from alignlab.attacks.privacy.extraction import ExtractionConfig, run_extraction

    config = parse_command_config(ExtractionConfig, args, flags=("comparison", "samples", "output", "seed"),
                                  lists=["models"])
    _show(run_extraction(config), config.output)


def run_invert_command(args: argparse.Namespace) -> None:
    from alignlab.attacks.privacy.inversion import InversionConfig, run_inversion

    config = parse_command_config(InversionConfig, args, flags=("model", "steps", "output"), lists=["methods"])
    _show(run_inversion(config), config.output)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``mia``, ``exposure``, ``extract`` and ``invert`` on ``alignlab attack``."""
    add_config_command(subparsers, "mia", run_mia_command,
                       help="membership inference (loss, zlib, Min-K%%, Min-K%%++, reference) on a world model")
    add_config_command(subparsers, "exposure", run_exposure_command,
                       help="canary exposure vs repetitions, with and without a defence (dedup, DP-SGD)")
    add_config_command(subparsers, "extract", run_extract_command,
                       help="training-data extraction: sample, rank by perplexity/zlib/comparison model; "
                            "prompt-based secret extraction")
    add_config_command(subparsers, "invert", run_invert_command,
                       help="gradient inversion (DLG, TAG) of one training step's gradient")


def main(argv: list[str] | None = None) -> int:
    """``python -m alignlab.attacks.privacy.cli COMMAND ...``: this area's commands (privacy, backdoor, finetune)
    without the rest of the CLI."""
    import sys

    from alignlab.attacks import backdoor_cli
    from alignlab.cli import parse_args
    from alignlab.errors import AlignlabError

    parser = argparse.ArgumentParser(prog="alignlab attack")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_commands(subparsers)
    backdoor_cli.add_commands(subparsers)
    try:
        args = parse_args(parser, list(sys.argv[1:] if argv is None else argv))
        args.handler(args)
    except AlignlabError as err:
        print(f"alignlab: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
