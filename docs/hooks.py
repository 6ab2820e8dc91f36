"""MkDocs hook: the CLI reference page is generated at build time from the config dataclasses.

Each command's keys, defaults and help come from ``alignlab.config.describe`` (the field docstrings that
``--help`` prints), so the reference is never written twice. The page ``docs/cli.md`` holds the marker
``<!-- cli-reference -->`` where the tables go.
"""

from __future__ import annotations

import importlib
from typing import Any

MARKER = "<!-- cli-reference -->"

# Commands other than `alignlab train METHOD`: (command line, "module:ConfigClass").
COMMANDS = [
    ("alignlab demo", "alignlab.experiments.demo:DemoConfig"),
    ("alignlab world build", "alignlab.world.build:WorldBuildConfig"),
    ("alignlab world score", "alignlab.world.evaluate:WorldScoreConfig"),
    ("alignlab world eval", "alignlab.world.cli:WorldEvalConfig"),
    ("alignlab eval", "alignlab.evaluate.run:EvalConfig"),
    ("alignlab judge", "alignlab.evaluate.judge:JudgeConfig"),
    ("alignlab serve", "alignlab.evaluate.serve:ServeConfig"),
    ("alignlab bench methods", "alignlab.experiments.bench:BenchConfig"),
    ("alignlab bench online", "alignlab.experiments.online_bench:OnlineBenchConfig"),
    ("alignlab bench selection", "alignlab.experiments.selection_bench:SelectionBenchConfig"),
    ("alignlab bench decoding", "alignlab.experiments.decoding_bench:DecodingBenchConfig"),
    ("alignlab bench rlsf", "alignlab.experiments.rlsf_bench:RLSFBenchConfig"),
    ("alignlab bench rules", "alignlab.experiments.rules_bench:RulesBenchConfig"),
    ("alignlab bench findings", "alignlab.experiments.findings_bench:FindingsBenchConfig"),
    ("alignlab bench ird", "alignlab.experiments.ird_bench:IRDBenchConfig"),
    ("alignlab bench sensei", "alignlab.experiments.sensei_bench:SenseiBenchConfig"),
    ("alignlab bench uddia", "alignlab.experiments.uddia_bench:UDDIABenchConfig"),
    ("alignlab data select", "alignlab.outer.selection:SelectConfig"),
    ("alignlab oversee consistency", "alignlab.oversight.cli:ConsistencyConfig"),
    ("alignlab oversee self-consistency", "alignlab.oversight.cli:SelfConsistencyConfig"),
    ("alignlab interpret cache", "alignlab.interpret.cli:CacheConfig"),
    ("alignlab interpret patch", "alignlab.interpret.cli:PatchConfig"),
    ("alignlab interpret lens", "alignlab.interpret.cli:LensConfig"),
    ("alignlab interpret heads", "alignlab.interpret.cli:HeadsConfig"),
    ("alignlab attack run", "alignlab.attacks.pipeline:AttackRunConfig"),
    ("alignlab attack robustness", "alignlab.attacks.robustness:RobustnessConfig"),
    ("alignlab attack perplexity-filter", "alignlab.attacks.defences:PerplexityFilterConfig"),
    ("alignlab attack adversarial-training", "alignlab.attacks.defences:AdversarialTrainingConfig"),
    ("alignlab attack mia", "alignlab.attacks.privacy.mia:MIAConfig"),
    ("alignlab attack exposure", "alignlab.attacks.privacy.exposure:ExposureConfig"),
    ("alignlab attack extract", "alignlab.attacks.privacy.extraction:ExtractionConfig"),
    ("alignlab attack invert", "alignlab.attacks.privacy.inversion:InversionConfig"),
    ("alignlab attack backdoor", "alignlab.attacks.backdoor:BackdoorConfig"),
    ("alignlab attack finetune", "alignlab.attacks.finetune_attack:FinetuneAttackConfig"),
    ("alignlab interpret refusal", "alignlab.interpret.world_directions:RefusalConfig"),
    ("alignlab interpret harm-pca", "alignlab.interpret.world_directions:HarmPCAConfig"),
    ("alignlab interpret truth", "alignlab.interpret.world_directions:TruthConfig"),
    ("alignlab interpret edit", "alignlab.interpret.world_editing:EditConfig"),
    ("alignlab interpret steer", "alignlab.interpret.steer_prompts:SteerConfig"),
    ("alignlab interpret neurons", "alignlab.interpret.steer_prompts:NeuronsConfig"),
]


def _cell(text: str) -> str:
    """Text that stays inside one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _table(cls: type, defaults: Any = None) -> str:
    from alignlab.config import describe

    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{key}` | `{_cell(default)}` | {_cell(doc)} |" for key, default, doc in describe(cls, defaults=defaults)]
    return "\n".join(rows)


def _load(target: str) -> type:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def cli_reference() -> str:
    """The markdown of every command's keys: the other commands, then one section per training method."""
    from alignlab.inner.cli import EXPERIMENTS, config_class
    from alignlab.registry import get_method, methods

    inner = [(f"alignlab inner run {name}", f"{cls.__module__}:{cls.__name__}") for name in EXPERIMENTS
             for cls in [config_class(importlib.import_module(f"alignlab.inner.experiments.{name}"))]]
    parts = []
    for command, target in COMMANDS + inner:
        cls = _load(target)
        parts += [f"## `{command}`", f"Config: `{target.replace(':', '.')}`.", _table(cls)]
    parts.append("## `alignlab train METHOD`")
    listing = ["| method | stage | learns from | config |", "|---|---|---|---|"]
    for name, spec in methods().items():
        cls_name = spec.target.split(":")[1]
        listing.append(f"| [`{name}`](#train-{name}) | {spec.stage} | {spec.data} | `{cls_name}` |")
    parts.append("\n".join(listing))
    for name, spec in methods().items():
        cls, _ = get_method(name)
        module, cls_name, function = spec.target.split(":")
        parts += [f"### `alignlab train {name}` {{ #train-{name} }}",
                  f"Config `{module}.{cls_name}`, trained by `{module}.{function}`"
                  + (f"; the name sets {', '.join(f'`{k}={v}`' for k, v in spec.defaults.items())}." if spec.defaults
                     else "."),
                  _table(cls, cls(**spec.defaults))]
    return "\n\n".join(parts) + "\n"


def on_startup(**_: Any) -> None:
    """alignlab's docstrings head their doctests "Example:"; griffe's Google parser knows only "Examples:", and
    would render the doctest as prose (its output lists then read as broken links). Teach it the singular."""
    from griffe._internal.docstrings import google

    google._section_kind.setdefault("example", google.DocstringSectionKind.examples)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
