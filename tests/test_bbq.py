"""BBQ on the real files: alignlab's scores equal lm-eval 0.4.13's own BBQ functions (its process_docs,
process_results_multiple_choice and aggregations) on the same documents and log-likelihoods; bad rows are
named."""

import gzip
import hashlib
import json
import math

import pytest

pytest.importorskip("lm_eval")
from conftest import SHARED_DATA
from lm_eval.tasks.bbq import utils as harness_bbq  # noqa: E402

from alignlab.errors import DataError  # noqa: E402
from alignlab.evaluate.bbq import BBQTask, bbq_choices, biased_answers, load_bbq  # noqa: E402
from alignlab.evaluate.interface import LM  # noqa: E402
from alignlab.evaluate.tasks import get_task  # noqa: E402

BBQ = SHARED_DATA / "bbq"


class HashLM(LM):
    """Log-likelihoods that are a fixed pseudo-random function of the request: any two scorers given the
    same requests see the same numbers, with no model."""

    def loglikelihood(self, requests):
        return [(-int(hashlib.sha256(f"{c}|{x}".encode()).hexdigest()[:8], 16) / 2**28, False)
                for c, x in requests]

    def loglikelihood_rolling(self, texts):
        raise NotImplementedError

    def generate(self, prompts, **kwargs):
        raise NotImplementedError


def _sample_rows(tmp_path, every=23):
    """Every ``every``-th row of each category (ambiguous and disambiguated alike), as one folder."""
    folder = tmp_path / "bbq"
    folder.mkdir()
    for path in sorted(BBQ.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as handle:
            rows = [json.loads(line) for line in handle][::every]
        (folder / path.name.replace(".gz", "")).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_bbq_equals_lm_eval(tmp_path):
    import datasets

    folder = _sample_rows(tmp_path)
    lm = HashLM()
    out = BBQTask(data_path=str(folder), n_boot=50).run(lm)
    rows = load_bbq(folder)
    assert out.n == len(rows) > 400 and len(out.groups) == 6

    docs = harness_bbq.process_docs(datasets.Dataset.from_list([{k: r[k] for k in r if k != "subset"} for r in rows]))
    per_doc = []
    for doc, row in zip(docs, rows):
        choices = harness_bbq.doc_to_choice(doc)
        assert choices == bbq_choices(row) and sorted(doc["biased_answers"]) == sorted(biased_answers(row))
        results = lm.loglikelihood([(harness_bbq_prompt(doc), " " + c) for c in choices])
        per_doc.append(harness_bbq.process_results_multiple_choice(doc, results))
    want = {
        "acc": sum(d["acc"] for d in per_doc) / len(per_doc),
        "accuracy_amb": harness_bbq.agg_accuracy_amb([d["accuracy_amb"] for d in per_doc]),
        "accuracy_disamb": harness_bbq.agg_accuracy_disamb([d["accuracy_disamb"] for d in per_doc]),
        "amb_bias_score": harness_bbq.agg_amb_bias_scores([d["amb_bias_score"] for d in per_doc]),
        "disamb_bias_score": harness_bbq.agg_disamb_bias_scores([d["disamb_bias_score"] for d in per_doc]),
    }
    for name, value in want.items():
        assert out.metrics[name] == pytest.approx(value, abs=1e-6), name
    for category, group in out.groups.items():
        for kind, agg in (("amb", harness_bbq.agg_amb_bias_scores), ("disamb", harness_bbq.agg_disamb_bias_scores)):
            value = agg([d[f"{kind}_bias_score_{category}"] for d in per_doc])
            assert group[f"{kind}_bias_score"] == pytest.approx(value, abs=1e-6), (category, kind)
    # the answers are not degenerate: both bias scores are away from their "no biased answer" value of 0
    assert out.metrics["amb_bias_score"] != 0 and out.metrics["disamb_bias_score"] != 0
    lo, hi = out.extra["interval_95"]["disamb_bias_score"]
    assert lo <= out.metrics["disamb_bias_score"] <= hi


def harness_bbq_prompt(doc):
    return f"{doc['context']}\n\nQ: {doc['question']}\nA:"  # the task YAML's doc_to_text


def test_bbq_registered_and_original_choices(tmp_path):
    folder = _sample_rows(tmp_path, every=400)
    out = get_task("bbq_original", data_path=str(folder)).run(HashLM())
    assert all(len(s["loglikelihoods"]) == 3 for s in out.samples)
    for s in out.samples:  # the most likely of the three answers is the one scored
        row = s["doc"]
        best = max(range(3), key=s["loglikelihoods"].__getitem__)
        assert s["acc"] == float(best == row["label"])
    assert not math.isnan(out.metrics["accuracy_amb"])


def test_bbq_bad_rows_are_named(tmp_path):
    with gzip.open(BBQ / "Age.jsonl.gz", "rt") as handle:
        row = json.loads(handle.readline())
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n" + json.dumps({k: v for k, v in row.items() if k != "question_polarity"}) + "\n")
    with pytest.raises(DataError, match=r"row 1.*question_polarity|question_polarity.*row 1"):
        load_bbq(bad)
    bad.write_text(json.dumps({**row, "label": 5}) + "\n")
    with pytest.raises(DataError, match="label"):
        load_bbq(bad)
