"""Toxicity and hate-speech classifiers: train a small one, measure any one on labelled data per target group.

- :func:`train_classifier` fine-tunes any Hugging Face sequence-classification model (by default a tiny Llama
  built on the given tokenizer) on ``(text, label)`` rows and saves it with labels ``non_toxic`` / ``toxic``,
  so :class:`alignlab.evaluate.scorers.ModelToxicityScorer` (and the ``toxicity`` task's ``scorer.model``) can
  score generations with it: expected maximum toxicity and toxicity probability then come from a classifier,
  with the word lexicon left as the fallback when no classifier is given.
- :func:`classification_report` gives precision, recall and F1 overall and per target group (how well a
  hate-speech classifier protects each group), each with a bootstrap interval.
- :func:`world_toxicity_rows`: labelled data from the toy world, whose judge knows exactly which replies
  insult (toxicity) or attach a stereotype to a group (bias): ``label`` is 1 for either; ``group`` is the social
  group the prompt names ("none" otherwise).

``alignlab toxicity-train`` and ``alignlab toxicity-eval`` are the commands; a user's own labelled data is a
JSONL/CSV file named in the eval config (``--config my_task.yaml`` with ``data``, ``text_field``, ``label_field``,
``group_field``).

Example::

    >>> report = classification_report([0.9, 0.2, 0.7, 0.1], [1, 0, 0, 1], ["x", "x", "y", "y"])
    >>> report["overall"]["precision"], report["overall"]["recall"], report["groups"]["x"]["f1"]
    (0.5, 0.5, 1.0)
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.errors import DataError, EvalError
from alignlab.evaluate.judge_stats import bootstrap_interval

LABELS = {0: "non_toxic", 1: "toxic"}


def _prf(scores: Sequence[float], labels: Sequence[int], threshold: float) -> dict[str, float]:
    tp = sum(s >= threshold and y == 1 for s, y in zip(scores, labels))
    fp = sum(s >= threshold and y == 0 for s, y in zip(scores, labels))
    fn = sum(s < threshold and y == 1 for s, y in zip(scores, labels))
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return {"precision": precision, "recall": recall, "f1": f1, "n": len(labels), "positives": sum(labels)}


def classification_report(scores: Sequence[float], labels: Sequence[int], groups: Sequence[str] | None = None,
                          *, threshold: float = 0.5, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Precision, recall and F1 of ``score >= threshold`` against 0/1 ``labels``, overall (with 95% bootstrap
    intervals) and per group; undefined values (no positives) are NaN."""
    overall = _prf(scores, labels, threshold)
    pairs = list(zip(scores, labels))
    for metric in ("precision", "recall", "f1"):
        overall[f"{metric}_interval_95"] = list(bootstrap_interval(
            pairs, lambda ps, m=metric: _prf([s for s, _ in ps], [y for _, y in ps], threshold)[m],
            n_boot=n_boot, seed=seed))
    report: dict[str, Any] = {"overall": overall, "threshold": threshold, "groups": {}}
    for group in sorted(set(groups or ())):
        idx = [i for i, g in enumerate(groups) if g == group]
        report["groups"][group] = _prf([scores[i] for i in idx], [labels[i] for i in idx], threshold)
    return report


def world_toxicity_rows(seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out) rows ``{"text", "label", "group"}`` from the world's chat corpus: every assistant
    reply labelled by the world judge; a reply's split is fixed by a hash of its text (no text in both)."""
    from alignlab.world.build import build_world
    from alignlab.world.judge import as_world_prompt, score

    world = build_world(seed=seed, verbose=False)
    train, held_out, seen = [], [], set()
    for line in (world.root / "corpus_chat.jsonl").read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        prompt, reply = messages[0]["content"], messages[-1]["content"]
        if reply in seen:
            continue
        seen.add(reply)
        wp = as_world_prompt(prompt)
        verdict = score(wp, reply)
        row = {"text": reply, "label": int(verdict.toxicity > 0 or verdict.bias > 0),
               "group": wp.meta.get("group", "none")}
        bucket = int(hashlib.sha256(reply.encode()).hexdigest(), 16) % 5
        (held_out if bucket == 0 else train).append(row)
    return train, held_out


def read_labelled(path: str | Path, text_field: str = "text", label_field: str = "label",
                  group_field: str | None = "group") -> list[dict[str, Any]]:
    """Labelled rows of a JSONL/CSV file as ``{"text", "label" (0/1), "group"}``, each field checked."""
    from alignlab.evaluate.tasks import _read_file, find_data

    found = find_data(str(path))
    if found is None:
        raise DataError(f"labelled data '{path}' not found")
    rows = []
    for i, row in enumerate(_read_file(found, None)):
        for name in (text_field, label_field) + ((group_field,) if group_field else ()):
            if row.get(name) in (None, ""):
                raise DataError("the row has no value for this field", source=str(found), row=i, field=name)
        try:
            label = int(float(row[label_field]))
        except (TypeError, ValueError) as err:
            raise DataError(f"label {row[label_field]!r} is not 0 or 1", source=str(found), row=i,
                            field=label_field) from err
        if label not in (0, 1):
            raise DataError(f"label {label} is not 0 or 1", source=str(found), row=i, field=label_field)
        rows.append({"text": str(row[text_field]), "label": label,
                     "group": str(row[group_field]) if group_field else "all"})
    return rows


def train_classifier(rows: Sequence[dict[str, Any]], output: str | Path, *, tokenizer: str,
                     base_model: str | None = None, hidden_size: int = 64, layers: int = 2, epochs: int = 2,
                     lr: float = 1e-3, batch_size: int = 32, max_length: int = 64, seed: int = 0) -> dict[str, Any]:
    """Fine-tune a sequence classifier on ``rows`` (``text``, ``label``) and save it to ``output``.

    ``base_model``: any HF model directory to start from (its classification head is new); by default a tiny
    random Llama (``hidden_size``, ``layers``) on ``tokenizer``. Plain AdamW, cross-entropy on the two labels.
    Returns the mean training loss of each epoch.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

    from alignlab.core.models import load_tokenizer

    if not rows:
        raise EvalError("no labelled rows to train the classifier on")
    torch.manual_seed(seed)
    tok = load_tokenizer(tokenizer)
    labels = {"id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    if base_model:
        model = AutoModelForSequenceClassification.from_pretrained(base_model, num_labels=2, **labels)
    else:
        config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                             num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=max_length,
                             num_labels=2, pad_token_id=tok.pad_token_id, **labels)
        model = LlamaForSequenceClassification(config)
    model.config.pad_token_id = tok.pad_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(seed)
    order = list(range(len(rows)))
    history = []
    model.train()
    for _ in range(epochs):
        rng.shuffle(order)
        losses = []
        for start in range(0, len(order), batch_size):
            batch = [rows[i] for i in order[start : start + batch_size]]
            enc = tok([r["text"] for r in batch], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            out = model(**enc, labels=torch.tensor([r["label"] for r in batch]))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            losses.append(out.loss.item())
        history.append(sum(losses) / len(losses))
    model.eval()
    model.save_pretrained(output)
    tok.save_pretrained(output)
    return {"epoch_loss": history}


# ---- the commands ---------------------------------------------------------------------------------------------
@dataclass
class TrainClassifierConfig:
    """Train a toxicity / hate-speech classifier (a small HF sequence-classification model)."""

    output: str
    """directory for the classifier (save_pretrained) and train_results.json"""
    data: str = "world"
    """labelled JSONL/CSV ("world": the toy world's replies labelled by its judge)"""
    tokenizer: str = ""
    """tokenizer path ("" with data=world: the world's tokenizer)"""
    base_model: str | None = None
    """HF model to fine-tune (null: a tiny random Llama)"""
    text_field: str = "text"
    """field holding the text"""
    label_field: str = "label"
    """field holding the 0/1 label (1 = toxic)"""
    epochs: int = 2
    """passes over the data"""
    seed: int = 0
    """seed of the initialisation and the shuffling"""


@dataclass
class ClassifierEvalConfig:
    """Precision, recall and F1 of a toxicity classifier on labelled data, overall and per target group."""

    classifier: str
    """text-classification model directory"""
    output: str
    """directory for results.json"""
    data: str = "world"
    """labelled JSONL/CSV ("world": the world's held-out replies)"""
    text_field: str = "text"
    """field holding the text"""
    label_field: str = "label"
    """field holding the 0/1 label (1 = toxic)"""
    group_field: str | None = "group"
    """field naming the target group (null: none)"""
    toxic_label: str = "toxic"
    """the classifier's label whose probability is the toxicity score"""
    threshold: float = 0.5
    """a text is predicted toxic when its score is at least this"""


def run_train(config: TrainClassifierConfig) -> dict[str, Any]:
    from alignlab.core.provenance import write_result

    if config.data == "world":
        from alignlab.world.build import build_world

        rows = world_toxicity_rows()[0]
        tokenizer = config.tokenizer or str(build_world(verbose=False).tokenizer)
    else:
        rows = read_labelled(config.data, config.text_field, config.label_field, None)
        tokenizer = config.tokenizer or config.base_model or ""
        if not tokenizer:
            raise EvalError("tokenizer: name a tokenizer (or a base_model) for data outside the world")
    out = train_classifier(rows, config.output, tokenizer=tokenizer, base_model=config.base_model,
                           epochs=config.epochs, seed=config.seed)
    results = {"n_train": len(rows), **out}
    write_result(Path(config.output) / "train_results.json", results, seed=config.seed, config=config)
    return results


def run_classifier_eval(config: ClassifierEvalConfig) -> dict[str, Any]:
    from alignlab.core.provenance import write_result
    from alignlab.evaluate.scorers import ModelToxicityScorer

    rows = world_toxicity_rows()[1] if config.data == "world" else read_labelled(
        config.data, config.text_field, config.label_field, config.group_field)
    scores = ModelToxicityScorer(config.classifier, config.toxic_label).score([r["text"] for r in rows])
    report = classification_report(scores, [r["label"] for r in rows], [r["group"] for r in rows],
                                   threshold=config.threshold)
    write_result(Path(config.output) / "results.json", report, seed=0, config=config)
    return report
