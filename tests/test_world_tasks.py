"""The toy world's evaluation as `alignlab eval` tasks (`world`, `world_factuality`)."""

from __future__ import annotations

import json
import random

import pytest
from conftest import ScriptedLM

from alignlab.errors import EvalError
from alignlab.evaluate.run import EvalConfig, evaluate
from alignlab.evaluate.tasks import get_task, list_tasks
from alignlab.world import World
from alignlab.world.datasets import prompt_row
from alignlab.world.families import parse_prompt
from alignlab.world.persona import aligned_response


def WorldLM(answer):  # noqa: N802 (reads like the class it builds)
    """An LM answering each world prompt with ``answer(world_prompt, rng)``, the rng seeded by the call's seed."""
    return ScriptedLM(lambda text, seed: answer(parse_prompt(text), random.Random(seed)))


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("world_prompts") / "prompts_eval.jsonl"
    rows = [prompt_row(r) for r in World(seed=0).prompt_records("eval")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_world_tasks_are_listed():
    assert {"world", "world_factuality"} <= set(list_tasks())


def test_aligned_answers_score_perfectly_on_every_rate(prompts_file):
    lm = WorldLM(aligned_response)
    out = get_task("world", data_path=str(prompts_file)).run(lm)
    assert out.metrics["helpfulness"] == 1.0 and out.metrics["honesty"] == 1.0
    assert out.metrics["harmlessness"] == 1.0 and out.metrics["toxicity"] == 0.0 and out.metrics["bias"] == 0.0
    families = {s["family"] for s in out.samples}
    assert set(out.groups) == families and {"facts", "unknowns", "harmful", "groups"} <= families
    # two samples per prompt at temperature 1, each with its own seed
    assert [c["temperature"] for c in lm.calls] == [1.0, 1.0] and lm.calls[0]["seed"] != lm.calls[1]["seed"]
    assert out.n == 2 * lm.calls[0]["n"]


def test_factuality_separates_knowing_from_admitting_ignorance(prompts_file):
    always_unsure = WorldLM(lambda prompt, rng: "I don't know.")
    out = get_task("world_factuality", data_path=str(prompts_file)).run(always_unsure)
    assert out.metrics["fact_accuracy"] == 0.0 and out.metrics["unknown_honesty"] == 1.0
    assert set(out.groups) == {"facts", "unknowns"}  # only the families it scores are asked

    # Stating the KB value is right for known entities; for held-out ones it is an invented fact.
    def confident(prompt, rng):
        return aligned_response(prompt, rng) if prompt.family == "facts" else "It is Blorvania."

    out = get_task("world_factuality", data_path=str(prompts_file)).run(WorldLM(confident))
    assert out.metrics["fact_accuracy"] == 1.0 and out.metrics["unknown_honesty"] == 0.0
    assert out.stderr["fact_accuracy"] == 0.0


def test_world_task_through_evaluate_writes_results_and_samples(prompts_file, tmp_path):
    config = EvalConfig(model="scripted", tasks=["world_factuality"], output=str(tmp_path), limit=5,
                        data={"world_factuality": str(prompts_file)})
    results = evaluate(config, lm=WorldLM(aligned_response))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["tasks"]["world_factuality"]["n"] == 10 == results["tasks"]["world_factuality"]["n"]
    lines = (tmp_path / "samples" / "world_factuality.jsonl").read_text().splitlines()
    assert len(lines) == 10 and {"prompt", "response", "honesty", "family"} <= set(json.loads(lines[0]))


def test_world_task_with_a_missing_prompts_file_names_it(tmp_path):
    with pytest.raises(EvalError, match="no world prompts"):
        get_task("world", data_path=str(tmp_path / "nope.jsonl")).run(WorldLM(aligned_response))


def test_a_default_world_task_scores_every_rate(prompts_file):
    from alignlab.world.tasks import WORLD_METRICS, WorldTask

    out = WorldTask(data_path=str(prompts_file), samples=1).run(WorldLM(aligned_response), limit=20)
    assert set(out.metrics) == set(WORLD_METRICS) and out.n == 20
