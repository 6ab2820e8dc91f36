"""The task registry: built-in YAML tasks on fixtures, user YAML files, clear errors, Python tasks,
metric definitions, and evaluate() writing results atomically."""

import json
import math
from pathlib import Path

import pytest
import torch

from alignlab.errors import DataError, EvalError
from alignlab.evaluate import metrics as M
from alignlab.evaluate.fixtures import build_tiny_lm
from alignlab.evaluate.lm import HuggingFaceLM
from alignlab.evaluate.run import EvalConfig, evaluate
from alignlab.evaluate.scorers import LexiconToxicityScorer, is_refusal
from alignlab.evaluate.tasks import TaskOutput, get_task, list_tasks, register_task

FIX = Path(__file__).parent / "test_eval_fixtures"


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    torch.set_num_threads(1)
    texts = [
        json.dumps(json.loads(line)) for line in (FIX / "truthfulqa_mc.jsonl").read_text().splitlines()
    ] * 5
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny"), texts, vocab_size=300, hidden_size=32, layers=1)
    return HuggingFaceLM(path, batch_size=8, device="cpu")


def test_metric_definitions():
    assert M.crows_pair(-3.0, -5.0) == {"likelihood_diff": 2.0, "pct_stereotype": 1.0}
    assert M.crows_pair(-5.0, -3.0)["pct_stereotype"] == 0.0
    lls, labels = [-1.0, -2.0, -0.5, -900.0], [1, 1, 0, 0]
    direct = (math.exp(-1) + math.exp(-2)) / (math.exp(-1) + math.exp(-2) + math.exp(-0.5))
    assert M.mc2(lls, labels) == pytest.approx(direct)
    assert M.accuracy([-2.0, -1.0], {0}) == 0.0 and M.accuracy_norm([-2.0, -1.0], ["abcd", "a"], {0}) == 1.0
    tox = M.toxicity([[0.1, 0.6], [0.2, 0.4]])
    assert tox == [{"max_toxicity": 0.6, "toxic_any": 1.0}, {"max_toxicity": 0.4, "toxic_any": 0.0}]
    mean, se = M.mean_and_stderr([1.0, 0.0, 1.0, 0.0])
    assert mean == 0.5 and se == pytest.approx(math.sqrt(1 / 3 / 4))


def test_scorers():
    assert is_refusal("I’m sorry, but I can’t help with that.") and not is_refusal("Sure, here it is.")
    scorer = LexiconToxicityScorer(["jerk"])
    assert scorer.score(["what a jerk", "jerk jerk", "jerkin is a garment"]) == [0.5, 0.75, 0.0]


def test_builtin_tasks_run_on_fixtures(lm):
    assert {
        "crows_pairs",
        "hhh_alignment",
        "truthfulqa_mc1",
        "truthfulqa_mc2",
        "advbench_refusal",
        "toxicity",
    } <= set(list_tasks())
    hhh = get_task("hhh_alignment", data_path=str(FIX / "hhh_alignment.json")).run(lm)
    assert hhh.n == 4 and 0.0 <= hhh.metrics["acc"] <= 1.0
    # acc must be what the log-likelihoods say: the best-scored reply is the most likely one
    for s in hhh.samples:
        best = max(range(len(s["choices"])), key=lambda j: s["loglikelihoods"][j])
        assert s["acc"] == float(s["doc"]["target_scores"][s["choices"][best]] == 1)
    mc2 = get_task("truthfulqa_mc2", data_path=str(FIX / "truthfulqa_mc.jsonl")).run(lm)
    for s in mc2.samples:
        labels = s["doc"]["mc2_targets"]["labels"]
        assert s["mc2"] == pytest.approx(M.mc2(s["loglikelihoods"], labels))
    crows = get_task("crows_pairs").run(lm, limit=6)
    assert crows.n == 6 and sum(g["n"] for g in crows.groups.values()) == 6
    refusal = get_task("advbench_refusal").run(lm, limit=2)
    assert refusal.extra["parse_failures"] == 0 and refusal.metrics["refusal_rate"] in (0.0, 0.5, 1.0)
    tox = get_task("toxicity", data_path=str(FIX / "real_toxicity_prompts.jsonl"))
    tox.generation.update(samples=2, max_tokens=4)
    out = tox.run(lm)
    assert out.n == 3 and all(len(s["responses"]) == 2 for s in out.samples)


def test_user_yaml_and_errors(lm, tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text(
        '{"q": "2+2?", "options": ["4", "5"], "answer": 0}\n{"q": "Sky?", "options": ["blue", "green"]}\n'
    )
    task = tmp_path / "my_task.yaml"
    body = (
        "type: multiple_choice\ndata: {path: qa.jsonl}\ncontext: 'Q: {q}\\nA:'\n"
        "choices: {field: options, format: list}\ngold: {field: answer}\nmetrics: [acc]\n"
    )
    task.write_text(body)
    with pytest.raises(DataError) as err:  # the second row has no 'answer'
        get_task(str(task)).run(lm)
    assert err.value.row == 1 and err.value.field == "answer" and "qa.jsonl" in str(err.value)
    assert get_task(str(task)).run(lm, limit=1).n == 1

    for bad, key in [
        (body.replace("metrics: [acc]", "metrics: [accuracy]"), "metrics"),
        (body.replace("type: multiple_choice", "type: ranking"), "type"),
        (body + "temprature: 1\n", "temprature"),
    ]:
        task.write_text(bad)
        with pytest.raises(EvalError, match=f"my_task.yaml.*'{key}'"):
            get_task(str(task))
    with pytest.raises(EvalError, match="did you mean crows_pairs"):
        get_task("crows_pair")


def test_python_task_and_evaluate_writes_results(lm, tmp_path):
    class Constant:
        name = "constant"

        def run(self, lm, *, limit=None, judge=None):
            samples = [{"score": float(i % 2)} for i in range(limit or 4)]
            return TaskOutput(metrics={"score": 0.5}, stderr={"score": None}, n=len(samples), samples=samples)

    register_task("constant", Constant)
    config = EvalConfig(model="tiny", tasks=["constant", "crows_pairs"], output=str(tmp_path / "out"), limit=4)
    results = evaluate(config, lm=lm)
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["tasks"] == results["tasks"]
    crows = on_disk["tasks"]["crows_pairs"]
    assert crows["n"] == 4 and set(crows["metrics"]) == {"likelihood_diff", "pct_stereotype"}
    assert "analytic" in crows["stderr_method"] and crows["stderr"]["likelihood_diff"] > 0
    lines = (tmp_path / "out" / "samples" / "crows_pairs.jsonl").read_text().splitlines()
    assert len(lines) == 4 and "loglikelihoods" in json.loads(lines[0])
    assert not list((tmp_path / "out").rglob("*.tmp"))  # atomic writes leave no temp files
    with pytest.warns(DeprecationWarning, match="pass an EvalConfig"):  # the pre-config call, for one release
        old = evaluate(lm, ["constant"], tmp_path / "old", limit=2)
    assert old["tasks"]["constant"]["n"] == 2 and old["model"] == "HuggingFaceLM"


def test_judge_refusal_classifier_and_model_toxicity_scorer(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from alignlab.evaluate.fixtures import train_tokenizer
    from alignlab.evaluate.scorers import JudgeRefusalClassifier, ModelToxicityScorer

    class Judge:  # answers by a rule on the reply shown to it
        def generate(self, prompts, **kwargs):
            replies = [p[-1]["content"].split("Assistant's reply:\n")[1] for p in prompts]
            return [
                "[[REFUSED]]" if "no" in r else "[[COMPLIED]]" if "sure" in r else "unsure" for r in replies
            ]

    verdicts = JudgeRefusalClassifier(Judge()).classify(["a", "b", "c"], ["no way", "sure thing", "hmm"])
    assert verdicts == [True, False, None]  # an unparsable verdict stays unknown

    tok = train_tokenizer(["you are nice", "you are awful"] * 10, vocab_size=280)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=2,
        pad_token_id=tok.pad_token_id,
        id2label={0: "non_toxic", 1: "toxic"},
        label2id={"non_toxic": 0, "toxic": 1},
    )
    LlamaForSequenceClassification(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    scores = ModelToxicityScorer(str(tmp_path)).score(["you are nice", "you are awful"])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores) and scores[0] != scores[1]
    with pytest.raises(EvalError, match="no label 'hateful'"):
        ModelToxicityScorer(str(tmp_path), toxic_label="hateful").score(["x"])
