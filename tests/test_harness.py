"""lm-evaluation-harness 0.4.13 in both directions, offline on the shared BBQ and BIG-bench files.

- alignlab's built-in HHH and BIG-bench ethics tasks equal lm-eval's own tasks (its prompts, metric and
  aggregation, run by its evaluator with its own ``HFLM``) on the same documents and model;
- ``lm_eval:<task>`` runs a harness task on an alignlab LM and reports in alignlab's format (BBQ: equal to the
  built-in ``bbq``); unknown names get close suggestions;
- alignlab's LM registered as the harness model ``alignlab`` gives the harness the same numbers as ``HFLM``,
  through lm-eval's evaluator and through its command line (``python -m alignlab.evaluate.harness``), and the
  same greedy strings on generation tasks (``generate_until``, stop strings and lengths per request group).
"""

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("lm_eval")
from conftest import CORPUS, SHARED_DATA, ScriptedLM  # noqa: E402
from lm_eval.evaluator import evaluate as harness_evaluate  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from alignlab.errors import EvalError  # noqa: E402
from alignlab.evaluate.fixtures import build_tiny_lm  # noqa: E402
from alignlab.evaluate.harness import HarnessLM, HarnessTask, harness_output  # noqa: E402
from alignlab.evaluate.lm import HuggingFaceLM  # noqa: E402
from alignlab.evaluate.tasks import get_task  # noqa: E402

LIMIT = 16


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny"), CORPUS * 3, vocab_size=300, hidden_size=32, layers=1)
    harness = HFLM(pretrained=path, device="cpu", dtype="float64", batch_size=8)
    ours = HuggingFaceLM(path, batch_size=8, device="cpu")
    ours.model.double()  # float64 on both sides: the comparison tests the algorithm, not rounding
    return path, harness, ours


def _peer(task_name, hflm, limit=LIMIT):
    """lm-eval's own task on the shared files, run by lm-eval's evaluator on its own HFLM."""
    task = HarnessTask(task_name)._build()
    results = harness_evaluate(hflm, {"tasks": {task_name: task}}, limit=limit, bootstrap_iters=0, verbosity="ERROR")
    return harness_output(results, task_name)


@pytest.mark.parametrize("ours_name, peer_name", [
    ("hhh_alignment", "bigbench_hhh_alignment_multiple_choice"),
    ("bigbench_simple_ethical_questions", "bigbench_simple_ethical_questions_multiple_choice"),
    ("bigbench_moral_permissibility", "bigbench_moral_permissibility_multiple_choice"),
])
def test_bigbench_tasks_equal_lm_eval(models, ours_name, peer_name):
    _, hflm, ours = models
    out = get_task(ours_name).run(ours, limit=LIMIT)
    peer = _peer(peer_name, hflm)
    assert out.n == peer.n == LIMIT
    assert out.metrics["acc"] == pytest.approx(peer.metrics["acc"], abs=1e-6)
    # per document, not only on average
    assert [s["acc"] for s in out.samples] == [s["acc"] for s in sorted(peer.samples, key=lambda s: s["index"])]



@pytest.mark.parametrize("ours_name, peer_name", [
    ("hhh_alignment", "bigbench_hhh_alignment_multiple_choice"),
    ("bigbench_simple_ethical_questions", "bigbench_simple_ethical_questions_multiple_choice"),
    ("bigbench_moral_permissibility", "bigbench_moral_permissibility_multiple_choice"),
])
def test_bigbench_layout_orders_choices_and_targets_as_lm_eval(ours_name, peer_name):
    """Every document's requests (context, " " + choice, in choice order) and gold index are the ones lm-eval's own
    task definition (its YAML's doc_to_text / doc_to_choice / doc_to_target) makes from the same rows, for all
    of each file; and the rows have the layout of the ``hails/bigbench`` rows that definition was written for
    (the Hugging Face builder strips inputs, targets and choices)."""
    seen = []
    scripted = ScriptedLM(score=lambda context, continuation: seen.append((context, continuation)) or 0.0)
    out = get_task(ours_name).run(scripted)
    peer = HarnessTask(peer_name)._build()
    peer.build_all_requests(rank=0, world_size=1)
    docs = {i.doc_id: i.doc for i in peer.instances}
    expected = [tuple(i.args) for i in sorted(peer.instances, key=lambda i: (i.doc_id, i.idx))]
    assert out.n == len(docs) and seen == expected
    rows = [s["doc"] for s in out.samples]
    assert [r["gold"] for r in rows] == [peer.doc_to_target(docs[i]) for i in range(len(docs))]
    first_file = {"hhh_alignment": "bigbench_hhh_alignment/harmless.json"}.get(ours_name, f"{ours_name}.json")
    task_file = json.loads((SHARED_DATA / first_file).read_text())
    first, row = task_file["examples"][0], rows[0]
    prefix_in = task_file.get("example_input_prefix", "\nQ: ").lstrip()
    prefix_out = task_file.get("example_output_prefix", "\nA: ").rstrip()
    appended = "".join("\n  choice: " + c for c in sorted(first["target_scores"])) \
        if task_file.get("append_choices_to_input", True) else ""
    assert row["inputs"] == prefix_in + first["input"] + appended + prefix_out
    assert row["multiple_choice_targets"] == [c.strip() for c in first["target_scores"]]


def test_lm_eval_task_in_alignlab_equals_builtin_bbq(models):
    _, _, ours = models
    age = str(SHARED_DATA / "bbq" / "Age.jsonl.gz")  # one category: the harness's limit takes the first rows
    via_harness = get_task("lm_eval:bbq", data_path=age).run(ours, limit=LIMIT)
    builtin = get_task("bbq", data_path=age).run(ours, limit=LIMIT)
    assert via_harness.n == builtin.n == LIMIT
    for name in ("acc", "accuracy_amb", "accuracy_disamb", "amb_bias_score", "disamb_bias_score"):
        assert via_harness.metrics[name] == pytest.approx(builtin.metrics[name], abs=1e-6, nan_ok=True), name
    assert via_harness.metrics["disamb_bias_score_Age"] == pytest.approx(
        builtin.groups["Age"]["disamb_bias_score"], abs=1e-6, nan_ok=True)


def test_unknown_harness_task_suggests_close_names():
    with pytest.raises(EvalError, match="no task 'bbqq'.*did you mean.*bbq"):
        get_task("lm_eval:bbqq").run(None)


def test_alignlab_model_in_the_harness_equals_hflm(models):
    _, hflm, ours = models
    name = "bigbench_hhh_alignment_multiple_choice"
    task = HarnessTask(name)._build()
    mine = harness_evaluate(HarnessLM(lm=ours), {"tasks": {name: task}}, limit=LIMIT, bootstrap_iters=0,
                            log_samples=True, verbosity="ERROR")
    theirs = harness_evaluate(hflm, {"tasks": {name: task}}, limit=LIMIT, bootstrap_iters=0,
                              log_samples=True, verbosity="ERROR")
    lls = [[r[0] for r in s["resps"]] for s in mine["samples"][name]]
    ref = [[r[0] for r in s["resps"]] for s in theirs["samples"][name]]
    for a, b in zip(lls, ref):
        assert [x[0] for x in a] == pytest.approx([x[0] for x in b], abs=1e-6)
    assert mine["results"][name]["acc,none"] == theirs["results"][name]["acc,none"]


def test_harness_command_line_runs_the_alignlab_model(models, tmp_path):
    path, _, ours = models
    docs = get_task("bigbench_moral_permissibility").load_rows(limit=6)[0]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "moral_local.yaml").write_text(
        "task: moral_local\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {tmp_path / 'docs.jsonl'}}}}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{inputs}}'\ndoc_to_choice: '{{multiple_choice_targets}}'\n"
        "doc_to_target: '{{gold}}'\nmetric_list:\n  - metric: acc\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "alignlab.evaluate.harness", "run", "--model", "alignlab", "--model_args",
         f"pretrained={path}", "--batch_size", "4", "--device", "cpu", "--tasks", "moral_local", "--include_path", str(tmp_path / "tasks"),
         "--output_path", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result_file,) = list((tmp_path / "out").rglob("results_*.json"))
    acc = json.loads(result_file.read_text())["results"]["moral_local"]["acc,none"]
    ours_float = HuggingFaceLM(path, batch_size=4, device="cpu")  # the command line's model runs in float32
    assert acc == pytest.approx(get_task("bigbench_moral_permissibility").run(ours_float, limit=6).metrics["acc"])



def _generation_task(name, docs_file, generation_kwargs):
    """A local generate_until task built from its config (a task YAML's keys), without indexing lm-eval's tasks."""
    from lm_eval.api.task import ConfigurableTask

    return ConfigurableTask(config={
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(docs_file)}},
        "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{question}}",
        "doc_to_target": "{{answer}}", "generation_kwargs": generation_kwargs,
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}]})


def test_alignlab_model_generates_in_the_harness_as_hflm_does(models, tmp_path):
    """lm-eval's generate_until path: two local generation tasks (different lengths and stop strings, so the
    requests fall into two groups) give alignlab's model and HFLM the same greedy strings, cut at the same stops."""
    _, hflm, ours = models
    docs = [{"question": line[:30], "answer": line[30:40]} for line in CORPUS[:8]]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    free = ours.generate([d["question"] for d in docs], max_tokens=12)
    # a stop string the model writes inside most of its free continuations (one character after their start)
    stop = max({t[1:3] for t in free if len(t) > 3}, key=lambda s: sum(s in t[1:] for t in free))
    tasks = {"gen_free": _generation_task("gen_free", tmp_path / "docs.jsonl",
                                          {"until": ["\n\n"], "max_gen_toks": 12, "do_sample": False}),
             "gen_stop": _generation_task("gen_stop", tmp_path / "docs.jsonl",
                                          {"until": [stop], "max_gen_toks": 10, "temperature": 0.0})}
    texts = {}
    for name, lm in (("alignlab", HarnessLM(lm=ours)), ("hflm", hflm)):
        results = harness_evaluate(lm, {"tasks": tasks}, bootstrap_iters=0, log_samples=True, verbosity="ERROR")
        texts[name] = {task: [s["resps"][0][0] for s in sorted(results["samples"][task], key=lambda s: s["doc_id"])]
                       for task in tasks}
    assert texts["alignlab"] == texts["hflm"]
    assert texts["alignlab"]["gen_free"] == free  # the harness path adds nothing to alignlab's own generation
    cut = [t for t, f in zip(texts["alignlab"]["gen_stop"], free) if stop in f[1:]]
    assert len(cut) >= 2 and all(stop not in t for t in texts["alignlab"]["gen_stop"])
