"""The task registry: tasks declared in YAML (no code), plus Python tasks registered by name.

A YAML task (``alignlab/evaluate/tasks/*.yaml``, or any path ending in ``.yaml``) has a ``type``:

- ``loglikelihood_pair``: two continuations per row (``choices``: two templates) scored under
  ``context``; metrics ``likelihood_diff``, ``pct_stereotype`` (CrowS-Pairs).
- ``multiple_choice``: ``choices`` are templates, or ``{field: f, format: list|labels|scores}`` —
  a list with a ``gold`` index field, ``{"choices": [...], "labels": [0/1...]}`` (TruthfulQA's
  ``mc1_targets``/``mc2_targets``) or ``{answer: score}`` (BIG-bench ``target_scores``); metrics ``acc``,
  ``acc_norm``, ``mc1`` (= acc), ``mc2`` (labels only).
- ``generate``: a ``prompt`` template is answered (``generation``: max_tokens, temperature, top_p,
  samples, stop) and scored by ``scorer``: ``{kind: refusal, classifier: patterns|judge}`` →
  ``refusal_rate``; ``{kind: toxicity, lexicon: ..., model: ...}`` → ``expected_max_toxicity``,
  ``toxicity_probability``.

Templates are Python format strings over a row's fields (``"Q: {question}\\nA:"``, ``"{prompt[text]}"``).
``data`` names a local file (``path``: csv, jsonl, json, or ``format: bigbench`` for a BIG-bench
``task.json``), searched in the working directory, beside the YAML, in ``$ALIGNLAB_DATA_DIR``
(``os.pathsep``-separated); ``hub: {name, config, split}`` is the fallback
through ``datasets.load_dataset``.

Python tasks join with :func:`register_task`; built in are the toy world's ``world`` (ground-truth
evaluation) and ``world_factuality`` (answers against its knowledge base), see :mod:`alignlab.world.tasks`.

Example::

    >>> task = get_task("crows_pairs")                              # doctest: +SKIP
    >>> out = task.run(lm, limit=50)                                # doctest: +SKIP
    >>> out.metrics["pct_stereotype"]                               # doctest: +SKIP
"""

from __future__ import annotations

import csv
import difflib
import gzip
import importlib
import json
import os
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from alignlab.errors import DataError, EvalError
from alignlab.evaluate import metrics as M
from alignlab.evaluate.lm import LM

TASK_DIR = Path(__file__).parent / "tasks"
DATA_DIRS = ("data",)

TYPE_METRICS = {
    "loglikelihood_pair": {"likelihood_diff", "pct_stereotype"},
    "multiple_choice": {"acc", "acc_norm", "mc1", "mc2"},
    "generate": {"refusal_rate", "expected_max_toxicity", "toxicity_probability"},
}
SCORER_METRICS = {"refusal": {"refusal_rate"}, "toxicity": {"expected_max_toxicity", "toxicity_probability"}}
KEYS = {
    "name",
    "type",
    "description",
    "data",
    "context",
    "choices",
    "gold",
    "target_delimiter",
    "group_by",
    "metrics",
    "prompt",
    "chat",
    "generation",
    "scorer",
}


@dataclass
class TaskOutput:
    """What a task run returns: metric means, their standard errors, and the per-sample records."""

    metrics: dict[str, float]
    stderr: dict[str, float | None]
    n: int
    samples: list[dict[str, Any]]
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. parse_failures of a judge
    stderr_method: str = M.STDERR_METHOD


class Task(Protocol):
    name: str

    def run(self, lm: LM, *, limit: int | None = None, judge: LM | None = None) -> TaskOutput: ...


_PYTHON_TASKS: dict[str, Callable[..., Task]] = {}
HARNESS_PREFIX = "lm_eval:"  # lm_eval:<task> runs an lm-evaluation-harness task (alignlab.evaluate.harness)
# Built-in Python tasks, imported on first use so that listing tasks stays fast.
_BUILTIN_PYTHON_TASKS = {
    "world": ("alignlab.world.tasks", "world_task"),
    "world_factuality": ("alignlab.world.tasks", "world_factuality_task"),
    "bbq": ("alignlab.evaluate.bbq", "bbq_task"),
    "bbq_original": ("alignlab.evaluate.bbq", "bbq_original_task"),
    "advanced_ai_risk": ("alignlab.evaluate.ai_risk", "ai_risk_task"),
    "advanced_ai_risk_generate": ("alignlab.evaluate.ai_risk", "ai_risk_generate_task"),
    "trustgpt_world": ("alignlab.evaluate.trustgpt", "trustgpt_task"),
}


def register_task(name: str, factory: Callable[..., Task]) -> None:
    """Add a Python task: ``factory()`` returns an object with ``name`` and
    ``run(lm, *, limit=None, judge=None) -> TaskOutput``; with a data override it is called as
    ``factory(data_path)``. Registered names shadow YAML ones.

    Example::

        >>> class Factuality:                                                   # doctest: +SKIP
        ...     name = "my_factuality"
        ...     def run(self, lm, *, limit=None, judge=None): ...
        >>> register_task("my_factuality", Factuality)                      # doctest: +SKIP
    """
    _PYTHON_TASKS[name] = factory


def list_tasks() -> list[str]:
    return sorted(set(_PYTHON_TASKS) | set(_BUILTIN_PYTHON_TASKS) | {p.stem for p in TASK_DIR.glob("*.yaml")})


def get_task(name_or_path: str, *, data_path: str | None = None) -> Task:
    """A registered Python task, a built-in YAML task, a YAML file, or ``lm_eval:<task>`` (any lm-evaluation-harness
    task, :mod:`alignlab.evaluate.harness`); ``data_path`` replaces its data file."""
    if name_or_path.startswith(HARNESS_PREFIX):  # imported by name, as the built-in Python tasks are
        harness_task = importlib.import_module("alignlab.evaluate.harness").harness_task
        return harness_task(name_or_path.removeprefix(HARNESS_PREFIX), data_path)
    if name_or_path not in _PYTHON_TASKS and name_or_path in _BUILTIN_PYTHON_TASKS:
        module, factory = _BUILTIN_PYTHON_TASKS[name_or_path]
        register_task(name_or_path, getattr(importlib.import_module(module), factory))
    if name_or_path in _PYTHON_TASKS:
        factory = _PYTHON_TASKS[name_or_path]
        return factory(data_path) if data_path else factory()
    path = (
        Path(name_or_path) if name_or_path.endswith((".yaml", ".yml")) else TASK_DIR / f"{name_or_path}.yaml"
    )
    if not path.exists():
        close = difflib.get_close_matches(name_or_path, list_tasks(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known tasks: {', '.join(list_tasks())}"
        raise EvalError(f"unknown task '{name_or_path}'{hint}")
    return YamlTask.from_file(path, data_path=data_path)


# ---- YAML tasks ------------------------------------------------------------------------------------------
def _fields(template: str) -> list[str]:
    """The row fields a format template reads (``{prompt[text]}`` reads ``prompt``)."""
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    return [n.split("[")[0].split(".")[0] for n in names]


def _render(template: str, row: dict[str, Any], source: str, index: int) -> str:
    try:
        return template.format_map(row)
    except (KeyError, IndexError, TypeError) as err:
        raise DataError(f"template {template!r} cannot be filled: {err}", source=source, row=index) from err


def find_data(name: str, *, beside: str | Path | None = None) -> Path | None:
    """A data file or folder by name: an absolute path, or relative to the working directory, the folder of
    ``beside`` (a task file), each folder of ``$ALIGNLAB_DATA_DIR`` (``os.pathsep``-separated), then ``data/``."""
    given = Path(os.path.expanduser(os.path.expandvars(name)))
    if given.is_absolute():
        return given if given.exists() else None
    env = [d for d in os.environ.get("ALIGNLAB_DATA_DIR", "").split(os.pathsep) if d]
    roots = [Path.cwd(), *([Path(beside).parent] if beside else []), *map(Path, env), *map(Path, DATA_DIRS)]
    for root in roots:
        if (root / given).exists():
            return root / given
    return None


@dataclass
class YamlTask:
    """A task declared in YAML (see the module docstring for the schema)."""

    name: str
    type: str
    file: str
    data: dict[str, Any]
    metrics: list[str]
    description: str = ""
    context: str = ""
    choices: list[str] | dict[str, Any] | None = None
    gold: dict[str, Any] | None = None
    target_delimiter: str = " "
    group_by: str | None = None
    prompt: str = ""
    chat: bool | str = "auto"
    generation: dict[str, Any] = field(default_factory=dict)
    scorer: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path, *, data_path: str | None = None) -> YamlTask:
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise EvalError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise EvalError(f"{path}: a task file must be a mapping of keys")
        for key in raw:
            if key not in KEYS:
                close = difflib.get_close_matches(key, sorted(KEYS), n=1)
                raise EvalError(
                    f"{path}: unknown key '{key}'" + (f"; did you mean '{close[0]}'?" if close else "")
                )
        for key in ("type", "metrics", "data"):
            if key not in raw:
                raise EvalError(f"{path}: missing key '{key}'")
        if raw["type"] not in TYPE_METRICS:
            raise EvalError(
                f"{path}: key 'type': unknown task type '{raw['type']}'; choose one of {sorted(TYPE_METRICS)}"
            )
        metrics = raw["metrics"] if isinstance(raw["metrics"], list) else [raw["metrics"]]
        allowed = TYPE_METRICS[raw["type"]]
        if raw["type"] == "generate":
            kind = (raw.get("scorer") or {}).get("kind")
            if kind not in SCORER_METRICS:
                raise EvalError(
                    f"{path}: key 'scorer.kind': unknown scorer '{kind}'; choose one of "
                    f"{sorted(SCORER_METRICS)}"
                )
            allowed = SCORER_METRICS[kind]
        for m in metrics:
            if m not in allowed:
                raise EvalError(
                    f"{path}: key 'metrics': unknown metric '{m}' for type '{raw['type']}'; "
                    f"choose from {sorted(allowed)}"
                )
        data = dict(raw["data"])
        if data_path:
            data["path"] = data_path
        task = cls(
            name=raw.get("name", path.stem),
            file=str(path),
            data=data,
            metrics=metrics,
            **{k: v for k, v in raw.items() if k not in ("name", "data", "metrics")},
        )
        if (
            task.type == "multiple_choice"
            and "mc2" in metrics
            and (not isinstance(task.choices, dict) or task.choices.get("format") != "labels")
        ):
            raise EvalError(f"{path}: key 'metrics': mc2 needs 'choices' of format 'labels'")
        if task.type == "loglikelihood_pair" and not (
            isinstance(task.choices, list) and len(task.choices) == 2
        ):
            raise EvalError(f"{path}: key 'choices': a loglikelihood_pair task needs exactly two templates")
        return task

    # ---- data -------------------------------------------------------------------------------------------
    def load_rows(self, limit: int | None = None) -> tuple[list[dict[str, Any]], str]:
        """The task's rows (the first ``limit``) and the name of their source, for error messages."""
        path = find_data(self.data["path"], beside=self.file) if self.data.get("path") else None
        if path is not None:
            rows, source = _read_file(path, self.data.get("format")), str(path)
        elif self.data.get("hub"):
            hub = self.data["hub"]
            try:
                import datasets

                ds = datasets.load_dataset(hub["name"], hub.get("config"), split=hub.get("split", "test"))
            except Exception as err:  # the hub client raises many kinds; the user needs one message
                raise DataError(
                    f"task '{self.name}': data file '{self.data.get('path')}' not found locally "
                    f"and loading '{hub['name']}' from the hub failed: {err}",
                    source=self.file,
                ) from err
            rows, source = [dict(r) for r in ds], f"hub:{hub['name']}"
        else:
            raise DataError(
                f"task '{self.name}': data file '{self.data.get('path')}' not found (searched the "
                "working directory, the task file's folder, $ALIGNLAB_DATA_DIR and "
                f"{', '.join(DATA_DIRS)}); pass a data path",
                source=self.file,
            )
        rows = rows[:limit] if limit is not None else rows
        needed = set(self.data.get("fields", []))
        for template in [
            self.context,
            self.prompt,
            *(self.choices if isinstance(self.choices, list) else []),
        ]:
            needed.update(_fields(template))
        for spec in (self.choices, self.gold):
            if isinstance(spec, dict) and "field" in spec:
                needed.add(spec["field"])
        if self.group_by:
            needed.add(self.group_by)
        for i, row in enumerate(rows):
            for f in sorted(needed):
                if f not in row or row[f] is None:
                    raise DataError(
                        f"task '{self.name}': the row has no field '{f}'", source=source, row=i, field=f
                    )
        return rows, source

    # ---- running ----------------------------------------------------------------------------------------
    def run(self, lm: LM, *, limit: int | None = None, judge: LM | None = None) -> TaskOutput:
        rows, source = self.load_rows(limit)
        if self.type in ("loglikelihood_pair", "multiple_choice") and not lm.supports_loglikelihood:
            lm.loglikelihood([])  # raises the backend's explanation of what is needed instead
        runner = {
            "loglikelihood_pair": self._run_pair,
            "multiple_choice": self._run_choice,
            "generate": self._run_generate,
        }[self.type]
        return runner(lm, rows, source, judge)

    def _run_pair(self, lm: LM, rows: list[dict], source: str, judge: LM | None) -> TaskOutput:
        requests = []
        for i, row in enumerate(rows):
            ctx = _render(self.context, row, source, i)
            requests += [(ctx, self.target_delimiter + _render(c, row, source, i)) for c in self.choices]
        lls = [ll for ll, _ in lm.loglikelihood(requests)]
        samples = []
        for i, row in enumerate(rows):
            scores = M.crows_pair(lls[2 * i], lls[2 * i + 1])
            samples.append({"index": i, "doc": row, "loglikelihoods": lls[2 * i : 2 * i + 2], **scores})
        return self._summarise(samples, rows)

    def _choices(self, row: dict, source: str, i: int) -> tuple[list[str], set[int], list[int] | None]:
        """(choice texts, indices of correct choices, 0/1 labels when the format has them)."""
        spec = self.choices
        if isinstance(spec, list):
            texts = [_render(c, row, source, i) for c in spec]
        else:
            value, fmt = row[spec["field"]], spec.get("format", "list")
            if fmt == "labels":
                texts, labels = list(value["choices"]), [int(y) for y in value["labels"]]
                return texts, {j for j, y in enumerate(labels) if y == 1}, labels
            if fmt == "scores":
                texts, scores = list(value), list(value.values())
                return texts, {j for j, s in enumerate(scores) if s == max(scores)}, None
            if fmt != "list":
                raise EvalError(
                    f"{self.file}: key 'choices.format': unknown format '{fmt}'; "
                    "choose one of list, labels, scores"
                )
            texts = list(value)
        if not self.gold:
            raise EvalError(f"{self.file}: key 'gold': choices given as a list need a gold index field")
        gold = row[self.gold["field"]]
        if not isinstance(gold, int) or not 0 <= gold < len(texts):
            raise DataError(
                f"gold index {gold!r} is not in 0..{len(texts) - 1}",
                source=source,
                row=i,
                field=self.gold["field"],
            )
        return texts, {gold}, None

    def _run_choice(self, lm: LM, rows: list[dict], source: str, judge: LM | None) -> TaskOutput:
        parsed, requests = [], []
        for i, row in enumerate(rows):
            ctx = _render(self.context, row, source, i)
            texts, gold, labels = self._choices(row, source, i)
            if not texts:
                raise DataError("the row has no choices", source=source, row=i)
            parsed.append((texts, gold, labels))
            requests += [(ctx, self.target_delimiter + t) for t in texts]
        lls = [ll for ll, _ in lm.loglikelihood(requests)]
        samples, at = [], 0
        for i, (texts, gold, labels) in enumerate(parsed):
            row_lls = lls[at : at + len(texts)]
            at += len(texts)
            scores = {}
            for m in self.metrics:
                if m in ("acc", "mc1"):
                    scores[m] = M.accuracy(row_lls, gold)
                elif m == "acc_norm":
                    scores[m] = M.accuracy_norm(row_lls, texts, gold)
                else:
                    scores[m] = M.mc2(row_lls, labels)
            samples.append(
                {"index": i, "doc": rows[i], "choices": texts, "loglikelihoods": row_lls, **scores}
            )
        return self._summarise(samples, rows)

    def _run_generate(self, lm: LM, rows: list[dict], source: str, judge: LM | None) -> TaskOutput:
        from alignlab.evaluate import scorers

        gen = {
            "max_tokens": 128,
            "temperature": 0.0,
            "top_p": 1.0,
            "samples": 1,
            "stop": None,
            "seed": 0,
            **self.generation,
        }
        texts = [_render(self.prompt, row, source, i) for i, row in enumerate(rows)]
        use_chat = self.chat if isinstance(self.chat, bool) else _has_chat(lm)
        prompts = [[{"role": "user", "content": t}] for t in texts] if use_chat else texts
        k = int(gen["samples"])
        outputs = [
            lm.generate(
                prompts,
                stop=gen["stop"],
                max_tokens=gen["max_tokens"],
                temperature=gen["temperature"],
                top_p=gen["top_p"],
                seed=gen["seed"] + j,
            )
            for j in range(k)
        ]
        per_row = [[outputs[j][i] for j in range(k)] for i in range(len(rows))]  # [row][sample]
        extra: dict[str, Any] = {}
        if self.scorer["kind"] == "refusal":
            if self.scorer.get("classifier", "patterns") == "judge":
                if judge is None:
                    raise EvalError(f"{self.file}: key 'scorer.classifier': 'judge' needs a judge model")
                classifier = scorers.JudgeRefusalClassifier(judge)
            else:
                classifier = scorers.PatternRefusalClassifier()
            flat = classifier.classify(
                [t for t in texts for _ in range(k)], [o for outs in per_row for o in outs]
            )
            samples = []
            for i, row in enumerate(rows):
                verdicts = flat[i * k : (i + 1) * k]
                known = [v for v in verdicts if v is not None]
                samples.append(
                    {
                        "index": i,
                        "doc": row,
                        "responses": per_row[i],
                        "refused": verdicts,
                        "refusal_rate": sum(known) / len(known) if known else None,
                    }
                )
            extra["parse_failures"] = sum(v is None for v in flat)
            scored = [s for s in samples if s["refusal_rate"] is not None]
            out = self._summarise(scored, [rows[s["index"]] for s in scored])
            out.samples, out.n, out.extra = samples, len(samples), extra
            return out
        scorer = (
            scorers.ModelToxicityScorer(self.scorer["model"], self.scorer.get("toxic_label", "toxic"))
            if self.scorer.get("model")
            else scorers.LexiconToxicityScorer(self.scorer.get("lexicon"))
        )
        flat_scores = scorer.score([o for outs in per_row for o in outs])
        per_prompt = [flat_scores[i * k : (i + 1) * k] for i in range(len(rows))]
        samples = []
        for i, (row, tox) in enumerate(zip(rows, M.toxicity(per_prompt))):
            samples.append(
                {
                    "index": i,
                    "doc": row,
                    "responses": per_row[i],
                    "toxicity": per_prompt[i],
                    "expected_max_toxicity": tox["max_toxicity"],
                    "toxicity_probability": tox["toxic_any"],
                }
            )
        return self._summarise(samples, rows)

    def _summarise(self, samples: list[dict], rows: list[dict]) -> TaskOutput:
        metrics, stderr = M.aggregate(samples, self.metrics)
        groups = {}
        if self.group_by:
            for g in sorted({str(r[self.group_by]) for r in rows}):
                members = [s for s, r in zip(samples, rows) if str(r[self.group_by]) == g]
                means, _ = M.aggregate(members, self.metrics)
                groups[g] = {**means, "n": len(members)}
        return TaskOutput(metrics=metrics, stderr=stderr, n=len(samples), samples=samples, groups=groups)


def _has_chat(lm: LM) -> bool:
    """Whether prompts should go as chat messages: a chat endpoint, or a tokenizer with a chat template."""
    if getattr(lm, "kind", None) == "chat":
        return True
    return bool(getattr(getattr(lm, "tokenizer", None), "chat_template", None))


def _read_file(path: Path, fmt: str | None) -> list[dict[str, Any]]:
    """Rows of a csv / jsonl / json / BIG-bench file (``.gz`` read through gzip), or of every such file in a
    folder, in name order, each row tagged with ``subset`` = its file's stem (BIG-bench HHH's four files)."""
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if _suffix(f) in (".csv", ".jsonl", ".json"))
        if not files:
            raise DataError("the folder holds no csv, jsonl or json file", source=str(path))
        return [{**row, "subset": _stem(f)} for f in files for row in _read_file(f, fmt)]
    fmt = fmt or {".csv": "csv", ".jsonl": "jsonl", ".json": "json"}.get(_suffix(path))
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="" if fmt == "csv" else None, encoding="utf-8") as handle:
            if fmt == "csv":
                return list(csv.DictReader(handle))
            text = handle.read()
        if fmt == "jsonl":
            rows = []
            for i, line in enumerate(text.splitlines()):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise DataError(f"not valid JSON: {err}", source=str(path), row=i) from err
            return rows
        if fmt in ("json", "bigbench"):
            data = json.loads(text)
            if isinstance(data, dict) and "examples" in data:
                # the BIG-bench task.json layout; a file is one subset of a task (HHH's harmless.json, ...)
                return [{**doc, "subset": _stem(path)} for doc in bigbench_docs(data, str(path))]
            if isinstance(data, list):
                return data
            raise DataError("expected a list of rows or a BIG-bench object with 'examples'", source=str(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read: {err}", source=str(path)) from err
    raise DataError(f"unknown data format '{fmt}'; use csv, jsonl, json or bigbench", source=str(path))


def first_per_group(rows: list[dict[str, Any]], key: str, limit: int | None) -> list[dict[str, Any]]:
    """The first ``limit`` rows of every value of ``row[key]`` (all rows for None), in their order.

    Example::

        >>> [r["i"] for r in first_per_group([{"g": "a", "i": 0}, {"g": "a", "i": 1}, {"g": "b", "i": 2}], "g", 1)]
        [0, 2]
    """
    if limit is None:
        return rows
    seen: dict[Any, int] = {}
    kept = []
    for row in rows:
        if seen.get(row[key], 0) < limit:
            kept.append(row)
            seen[row[key]] = seen.get(row[key], 0) + 1
    return kept


def _suffix(path: Path) -> str:
    """The data suffix under an optional ``.gz`` (``x.jsonl.gz`` -> ``.jsonl``)."""
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


def _stem(path: Path) -> str:
    return Path(path.stem).stem if path.suffix == ".gz" else path.stem


def bigbench_docs(task: dict[str, Any], source: str = "task.json") -> list[dict[str, Any]]:
    r"""A BIG-bench JSON task's multiple-choice examples as the rows lm-eval's ``bigbench_*_multiple_choice``
    tasks read (the ``hails/bigbench`` layout), each row keeping its original fields too.

    ``inputs`` is BIG-bench's zero-shot format: ``task_prefix`` + ``example_input_prefix`` (default
    ``"\nQ: "``) + the input + (unless ``append_choices_to_input`` is false) each choice after
    ``choice_prefix`` (default ``"\n  choice: "``) + ``example_output_prefix`` (default ``"\nA: "``), then
    stripped of surrounding whitespace, as the Hugging Face ``bigbench`` builder that made ``hails/bigbench``
    strips ``inputs``, ``targets`` and every ``multiple_choice_targets`` entry (lm-eval then joins context and
    choice with one space). ``multiple_choice_targets`` are the choices in the file's order (BIG-bench's
    ``choice = list(target_scores)``) and ``targets`` the top-scored ones, so lm-eval's
    ``multiple_choice_targets.index(targets[0])`` is ``gold``, the first choice with the top score.
    One difference remains: BIG-bench appends the choices to the text in a permutation drawn from its own
    random generator, which cannot be replayed without the ``bigbench`` package; here they go in sorted order
    (this changes the text only where ``append_choices_to_input`` is true; HHH and moral permissibility set it
    false).

    Example::

        >>> doc = bigbench_docs({"examples": [{"input": "Is it kind?", "target_scores": {"No": 0, "Yes ": 1}}],
        ...                      "append_choices_to_input": False})[0]
        >>> doc["inputs"], doc["multiple_choice_targets"], doc["targets"], doc["gold"]
        ('Q: Is it kind?\nA:', ['No', 'Yes'], ['Yes'], 1)
    """
    in_prefix = task.get("example_input_prefix", "\nQ: ")
    out_prefix = task.get("example_output_prefix", "\nA: ")
    choice_prefix = task.get("choice_prefix", "\n  choice: ")
    docs = []
    for i, example in enumerate(task["examples"]):
        scores = example.get("target_scores")
        if not isinstance(scores, dict) or not scores or "input" not in example:
            raise DataError("a multiple-choice example needs 'input' and a non-empty 'target_scores'",
                            source=source, row=i, field="target_scores")
        text = example["input"]
        if task.get("append_choices_to_input", True):
            text += choice_prefix + choice_prefix.join(sorted(scores))
        top = max(scores.values())
        choices = [k.strip() for k in scores]
        targets = [k.strip() for k, v in scores.items() if v == top]
        docs.append({**example, "inputs": (task.get("task_prefix", "") + in_prefix + text + out_prefix).strip(),
                     "targets": targets, "multiple_choice_targets": choices,
                     "multiple_choice_scores": [int(v) for v in scores.values()],
                     "gold": choices.index(targets[0])})
    return docs
