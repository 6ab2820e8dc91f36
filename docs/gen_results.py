"""Render the results tables of the docs and the README from the result files the commands wrote.

Every number in those tables comes from a JSON file under ``benchmarks/results/`` that a benchmark wrote
(``benchmarks/common.py`` ``write_result``; ``benchmarks/serve_load.py``), with its command line, commit and
machine, so a table cannot drift from the run that made it. The tables sit between marker comments::

    <!-- results:begin -->  ...generated...  <!-- results:end -->

in ``docs/benchmarks.md`` (every ratio, the machine and the command) and ``README.md`` (the headline ratio of
each benchmark).

Every other area (interpretability, attacks, oversight, inner alignment, evaluation, the world's experiments)
writes its result files under ``docs/results/<area>/`` with :func:`alignlab.core.provenance.write_result`, and
owns one renderer module ``docs/tables/<area>.py`` with ``BLOCKS = {"name": function}``: each function returns
the markdown that goes between ``<!-- results:begin name -->`` and ``<!-- results:end name -->`` in any page
under ``docs/`` (or the README). A module may also define ``FIGURES = {"docs/…/x.png": function(path)}``,
drawn from the same result files when the tables are rewritten.

``python docs/gen_results.py`` rewrites every block (and figure); ``--check`` only reports (exit 1) which
blocks differ from what the files give, which ``tests/test_docs.py`` asserts.

Example:
    >>> render_blocks(load_records(RESULTS))["README.md"].startswith("| benchmark |")
    True
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TABLES = ROOT / "docs" / "tables"
sys.path.insert(0, str(TABLES))  # the renderers and this script share docs/tables/_common.py
from _common import cell, command, commit, machine  # noqa: E402

NAMED_BLOCK = re.compile(r"(<!-- results:begin (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(\n?<!-- results:end (?P=name) -->)",
                         re.DOTALL)

# What each speed benchmark compares and the project's target for its headline ratio (a goal, not a measurement):
# name -> (what is measured, peer, headline ratio key, target as (">=" or "<=", value)); other ratios are listed too.
SPEED = {
    "sft_vs_trl": ("SFT tokens/s", "TRL `SFTTrainer`", "tokens_per_s", (">=", 1.0)),
    "dpo_vs_trl": ("DPO tokens/s, whole run", "TRL `DPOTrainer`", "whole_run_tokens_per_s", (">=", 1.5)),
    "grpo_vs_trl": ("GRPO generated tokens/s", "TRL `GRPOTrainer`", "tok_s", (">=", 1.5)),
    "loglik_vs_lmeval": ("CrowS-Pairs log-likelihood requests/s", "lm-eval `HFLM`", "wall_requests_per_s",
                         (">=", 1.3)),
    "bbq_vs_lmeval": ("BBQ log-likelihood requests/s (a context shared by 3 answers)", "lm-eval `HFLM`",
                      "wall_requests_per_s", (">=", 2.0)),
    "ppo_vs_sb3": ("PPO env steps/s", "Stable-Baselines3 PPO", "steps_per_s", (">=", 1.0)),
    "gcg_vs_nanogcg": ("GCG steps/s", "nanoGCG 0.3.0", "cpu_steps_per_s", (">=", 3.0)),
}
# Targets of secondary ratios (alignlab / peer): the per-CPU-second forms carry the headline's target, because on a
# machine shared with other jobs the wall-time ratio mostly measures how their load moved between the two sides.
SECONDARY_TARGETS = {("dpo_vs_trl", "peak_rss"): ("<=", 1.0), ("dpo_vs_trl", "whole_run_tokens_per_cpu_s"): (">=", 1.5),
                     ("grpo_vs_trl", "tok_cpu_s"): (">=", 1.5)}


def load_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Every result file in ``folder`` by its name (without ``.json``)."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def _status(ratio: float, target: tuple[str, float]) -> str:
    sign, value = target
    met = ratio >= value if sign == ">=" else ratio <= value
    return f"{sign} {value:g}× {'met' if met else '**not met**'}"


def speed_rows(records: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, records[name]) for name in SPEED if name in records]


def headline_table(records: dict[str, dict[str, Any]]) -> str:
    """The README's table: one headline ratio per speed benchmark."""
    rows = ["| benchmark | alignlab / peer | target | precision | result file |", "|---|---|---|---|---|"]
    for name, record in speed_rows(records):
        what, peer, key, target = SPEED[name]
        ratio = record["ratios"][key]
        rows.append(f"| {what} vs {peer} | **{ratio:.2f}×** | {_status(ratio, target)} | "
                    f"{record['precision']['both_sides']} | [`{name}.json`](benchmarks/results/{name}.json) |")
    missing = [name for name in SPEED if name not in records]
    if missing:
        rows.append(f"| {', '.join(missing)}: no result file yet (`make bench`) | | | | |")
    return "\n".join(rows)


def benchmarks_tables(records: dict[str, dict[str, Any]], list_missing: bool = True) -> str:
    """The benchmarks page: every ratio of every speed benchmark with its machine and command, then serving."""
    rows = ["| benchmark | peer | ratio (alignlab / peer) | target | precision | machine | commit | command |",
            "|---|---|---|---|---|---|---|---|"]
    for name, record in speed_rows(records):
        what, peer, key, target = SPEED[name]
        for ratio_name, ratio in record["ratios"].items():
            goal = target if ratio_name == key else SECONDARY_TARGETS.get((name, ratio_name))
            rows.append(f"| `{name}.py` — {what} | {peer} | {ratio_name}: **{ratio:.2f}×** | "
                        f"{_status(ratio, goal) if goal else '–'} | {record['precision']['both_sides']} | "
                        f"{cell(machine(record, ' per side'))} | `{commit(record)}` | `{cell(command(record))}` |")
    missing = [name for name in SPEED if name not in records]
    if missing and list_missing:
        rows.append(f"| {', '.join(f'`{n}.py`' for n in missing)}: no result file yet (`make bench`) "
                    "| | | | | | | |")
    parts = ["\n".join(rows)]
    serve = records.get("serve_load")
    if serve:
        setup = serve["setup"]
        parts.append(f"Serving (`alignlab serve`, batched against unbatched): {setup['requests']} greedy completions "
                     f"of {setup['max_tokens']} tokens from {setup['clients']} concurrent clients, {setup['model']}; "
                     f"`{cell(command(serve))}` at commit `{commit(serve)}` on {cell(machine(serve, ' per side'))}.")
        table = ["| mode | max_batch_size | requests/s | p50 latency (ms) | p90 (ms) | p99 (ms) | mean batch |",
                 "|---|---|---|---|---|---|---|"]
        for mode, r in serve["results"].items():
            table.append(f"| {mode} | {r['max_batch_size']} | {r['requests_per_s']:.1f} | {r['latency_p50_ms']:.0f} | "
                         f"{r['latency_p90_ms']:.0f} | {r['latency_p99_ms']:.0f} | {r['mean_batch_size']:.1f} |")
        parts.append("\n".join(table))
    return "\n\n".join(parts)


def render_blocks(records: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What goes between the markers, by file (relative to the repository root)."""
    return {"README.md": headline_table(records), "docs/benchmarks.md": benchmarks_tables(records)}


def replace_block(text: str, block: str, where: str) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"gen_results: {where} needs exactly one {BEGIN} and one {END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def area_renderers(tables: Path = TABLES) -> tuple[dict[str, Callable[[], str]], dict[str, Callable]]:
    """The named blocks and figures of every ``docs/tables/<area>.py`` (a name defined twice is an error)."""
    blocks: dict[str, Callable[[], str]] = {}
    figures: dict[str, Callable] = {}
    for module_path in sorted(tables.glob("[!_]*.py")):
        spec = importlib.util.spec_from_file_location(f"docs_tables_{module_path.stem}", module_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name in getattr(module, "BLOCKS", {}):
            if name in blocks:
                raise SystemExit(f"gen_results: block {name!r} is defined twice (second in {module_path.name})")
        blocks.update(getattr(module, "BLOCKS", {}))
        figures.update(getattr(module, "FIGURES", {}))
    return blocks, figures


def replace_named_blocks(text: str, blocks: dict[str, Callable[[], str]], where: str) -> str:
    """``text`` with the body of every ``<!-- results:begin name -->`` block rendered afresh."""
    def render(match: re.Match) -> str:
        name = match["name"]
        if name not in blocks:
            raise SystemExit(f"gen_results: {where}: no renderer defines block {name!r} (docs/tables/*.py BLOCKS)")
        return f"{match[1]}{blocks[name]().strip()}\n<!-- results:end {name} -->"
    return NAMED_BLOCK.sub(render, text)


def stale_files(root: Path = ROOT, results: Path = RESULTS, write: bool = False) -> list[str]:
    """The files whose tables differ from what the result files give (rewritten, with every figure, when
    ``write``)."""
    stale = []
    rendered = render_blocks(load_records(results))
    blocks, figures = area_renderers(root / "docs" / "tables")
    # the speed benchmarks re-run with both sides in fp32 (--precision no), as on a CPU without native bf16
    blocks["speed-fp32"] = lambda: benchmarks_tables(load_records(results / "fp32"), list_missing=False)
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    for path in pages:
        relative = str(path.relative_to(root))
        text = path.read_text()
        new = replace_block(text, rendered[relative], relative) if relative in rendered else text
        new = replace_named_blocks(new, blocks, relative)
        if new != text:
            stale.append(relative)
            if write:
                path.write_text(new)
    if write:
        for relative, draw in figures.items():
            draw(root / relative)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report tables that differ (exit 1)")
    args = parser.parse_args(argv)
    stale = stale_files(write=not args.check)
    for relative in stale:
        print(f"{relative}: {'differs from' if args.check else 'regenerated from'} its result files")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
