"""lm-evaluation-harness (0.4.13) in both directions.

**alignlab's LM inside the harness.** :class:`HarnessLM` is lm-eval's model ``alignlab``: harness users get
alignlab's log-likelihoods (shared-prefix tries, see :mod:`alignlab.evaluate.lm`) and its HTTP backends
(``pretrained=http://host:port/v1#model``). Installing alignlab (wheel or ``pip install -e``) puts an import hook
in site-packages (``alignlab_lm_eval_hook``) that adds the lazy registry entry
``alignlab -> alignlab.evaluate.harness:HarnessLM`` when lm-eval loads its model table, so lm-eval's own command
line finds the model and nothing is imported in processes that do not use lm-eval::

    lm_eval --model alignlab --model_args pretrained=runs/sft --batch_size 32 --tasks bbq --limit 100

Importing this module registers the class directly, so ``python -m alignlab.evaluate.harness run ...`` (lm-eval's
command line with this module imported) works from a checkout that is not installed.

**Any harness task inside alignlab.** ``alignlab eval --tasks lm_eval:<task>`` builds the harness's task (its
prompts, filters, metrics and aggregation) and runs it through lm-eval's evaluator on alignlab's LM; the
results land in alignlab's ``results.json`` format. Where the hub is out of reach the documents come from a
local file: ``--data lm_eval:<task>=PATH`` (csv, jsonl, json, a BIG-bench task.json, or a folder of them), or,
for the tasks whose data ship in ``$ALIGNLAB_DATA_DIR`` (:data:`LOCAL_DATA`: BBQ, BIG-bench HHH and the two
BIG-bench ethics tasks), automatically.

Example::

    >>> task = harness_task("bbq")                                        # doctest: +SKIP
    >>> task.run(load_lm("runs/sft"), limit=50).metrics["amb_bias_score"]  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass
from typing import Any

from lm_eval.api.model import LM as _HarnessBase
from lm_eval.api.registry import register_model

from alignlab.errors import EvalError
from alignlab.evaluate.interface import LM
from alignlab.evaluate.tasks import TaskOutput, _read_file, find_data

# Harness datasets whose files are in the shared data folder: (dataset_path, dataset_name) -> local name.
LOCAL_DATA = {
    ("oskarvanderwal/bbq", "All"): "bbq",
    ("hails/bigbench", "hhh_alignment_zero_shot"): "bigbench_hhh_alignment",
    ("hails/bigbench", "simple_ethical_questions_zero_shot"): "bigbench_simple_ethical_questions.json",
    ("hails/bigbench", "moral_permissibility_zero_shot"): "bigbench_moral_permissibility.json",
}


# ---- alignlab's LM as a harness model ------------------------------------------------------------------------
@register_model("alignlab")
class HarnessLM(_HarnessBase):
    """An alignlab :class:`~alignlab.evaluate.interface.LM` behind lm-eval's model interface.

    ``pretrained`` is anything :func:`~alignlab.evaluate.lm.load_lm` takes (a model or run dir, or an
    ``http[s][+chat|+completions]://`` URL); the other ``--model_args`` (``batch_size``, ``dtype``, ``autocast``,
    ``max_length``, ``share_prefix``) go to the local backend. Or wrap a loaded LM: ``HarnessLM(lm=...)``.
    """

    def __init__(self, pretrained: str | None = None, *, lm: LM | None = None, batch_size: int | str = 16,
                 **kwargs: Any):
        super().__init__()
        from alignlab.evaluate.lm import load_lm

        if lm is None:
            if pretrained is None:
                raise EvalError("the alignlab harness model needs pretrained=PATH_OR_URL")
            batch = 16 if str(batch_size).startswith("auto") else int(batch_size)
            known = {"dtype", "autocast", "max_length", "share_prefix", "device"}
            unknown = sorted(set(kwargs) - known - {"trust_remote_code"})
            if unknown:
                raise EvalError(f"unknown alignlab model_args {unknown}; known: pretrained, batch_size, "
                                f"{', '.join(sorted(known))}")
            options = {k: _parse_arg(v) for k, v in kwargs.items() if k in known}
            lm = load_lm(pretrained, batch_size=batch, **options)
        self.lm = lm

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.lm.loglikelihood([tuple(r.args) for r in requests])

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        return self.lm.loglikelihood_rolling([r.args[0] for r in requests])

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Requests grouped by their generation settings; ``until``, ``max_gen_toks``, ``temperature`` (0 or
        ``do_sample=False`` is greedy) and ``top_p`` are honoured, other settings are refused."""
        out: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(_generation_key(r.args[1]), []).append(i)
        for key, members in groups.items():
            settings = dict(key)
            until = settings.get("until")
            texts = self.lm.generate(
                [requests[i].args[0] for i in members],
                stop=[until] if isinstance(until, str) else list(until or ()),
                max_tokens=int(settings.get("max_gen_toks", 256)),
                temperature=float(settings.get("temperature", 0.0)) if settings.get("do_sample", True) else 0.0,
                top_p=float(settings.get("top_p", 1.0)),
            )
            for i, text in zip(members, texts):
                out[i] = text
        return out  # type: ignore[return-value]


def _parse_arg(value: Any) -> Any:
    if value in ("True", "true"):
        return True
    if value in ("False", "false"):
        return False
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def _generation_key(gen_kwargs: dict[str, Any]) -> tuple:
    allowed = {"until", "max_gen_toks", "temperature", "do_sample", "top_p"}
    extra = sorted(set(gen_kwargs) - allowed)
    if extra:
        raise EvalError(f"the alignlab harness model does not support generation settings {extra}")
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in gen_kwargs.items()))


# ---- a harness task as an alignlab task ----------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def task_manager() -> Any:
    """lm-eval's index of its tasks (built once: it reads every task YAML)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def harness_task_names() -> list[str]:
    return list(task_manager().all_tasks)


@dataclass
class HarnessTask:
    """One lm-eval task run by lm-eval's evaluator on an alignlab LM (see the module docstring)."""

    harness_name: str
    data_path: str | None = None
    bootstrap_iters: int = 1000

    @property
    def name(self) -> str:
        return f"lm_eval:{self.harness_name}"

    def _build(self) -> Any:
        manager = task_manager()
        entry = manager._entry(self.harness_name)
        if entry is None:
            close = difflib.get_close_matches(self.harness_name, manager.all_tasks, n=5, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else "; list them with `lm-eval ls tasks`"
            raise EvalError(f"lm-eval has no task '{self.harness_name}'{hint}")
        config = manager._factory._load_full_config(entry)
        if "task" not in config or config.get("class") is not None:
            raise EvalError(f"'{self.harness_name}' is an lm-eval group, tag or Python task; name one of its "
                            "YAML tasks instead")
        local = self.data_path or LOCAL_DATA.get((config.get("dataset_path"), config.get("dataset_name")))
        overrides: dict[str, Any] = {}
        if local is not None:
            path = find_data(local)
            if path is None:
                raise EvalError(f"lm_eval:{self.harness_name}: data '{local}' not found (searched the working "
                                "directory, $ALIGNLAB_DATA_DIR and data/)")
            split = config.get("test_split") or config.get("validation_split") or "test"
            rows = _read_file(path, None)
            overrides = {"custom_dataset": functools.partial(_as_dataset, rows, split),
                         "dataset_path": str(path), "dataset_name": None}
        return manager._factory.build(entry, overrides=overrides, registry=manager._index)

    def run(self, lm: LM, *, limit: int | None = None, judge: LM | None = None) -> TaskOutput:
        from lm_eval.evaluator import evaluate as harness_evaluate

        try:
            task = self._build()
        except EvalError:
            raise
        except Exception as err:  # the hub client and the harness raise many kinds; the user needs one line
            raise EvalError(f"lm_eval:{self.harness_name}: the harness could not build the task ({err}); "
                            f"without hub access pass its documents: --data lm_eval:{self.harness_name}=PATH") from err
        results = harness_evaluate(HarnessLM(lm=lm), {"tasks": {self.harness_name: task}}, limit=limit,
                                   bootstrap_iters=self.bootstrap_iters, log_samples=True, verbosity="ERROR")
        return harness_output(results, self.harness_name)


def _as_dataset(rows: list[dict[str, Any]], split: str, **_: Any) -> Any:
    import datasets

    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})


def harness_output(results: dict[str, Any], name: str) -> TaskOutput:
    """lm-eval's results for one task as a :class:`TaskOutput` (metrics ``"acc,none"`` become ``acc``, or
    ``acc,<filter>`` for filters other than ``none``)."""
    raw = results["results"][name]
    metrics, stderr = {}, {}
    for key, value in raw.items():
        if "," not in key or "_stderr," in key or not isinstance(value, int | float):
            continue
        metric, filt = key.split(",", 1)
        label = metric if filt == "none" else f"{metric},{filt}"
        metrics[label] = float(value)
        err = raw.get(f"{metric}_stderr,{filt}")
        stderr[label] = float(err) if isinstance(err, int | float) and math.isfinite(err) else None
    samples = [
        {"index": s.get("doc_id"), "doc": s.get("doc"), "target": s.get("target"),
         "responses": s.get("filtered_resps"), **{m: s[m] for m in metrics if isinstance(s.get(m), int | float)}}
        for s in results.get("samples", {}).get(name, [])
    ]
    n = results.get("n-samples", {}).get(name, {}).get("effective", len(samples))
    return TaskOutput(metrics=metrics, stderr=stderr, n=n, samples=samples,
                      extra={"harness_version": results.get("versions", {}).get(name)},
                      stderr_method="lm-eval's: analytic for means, bootstrap for other aggregations")


def harness_task(name: str, data_path: str | None = None) -> HarnessTask:
    """The alignlab task for ``lm_eval:<name>``."""
    return HarnessTask(name, data_path)


if __name__ == "__main__":  # lm-eval's own command line with ``alignlab`` registered above (no install needed)
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
