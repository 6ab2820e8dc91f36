"""Constitutional AI, SELF-ALIGN, ILF and recursive reward modelling: each protocol pinned with scripted LMs (what
is asked, in what order, what is parsed, what is trained on), stages that resume, and the commands end to end on a
tiny model."""

from __future__ import annotations

import json
import random

import pytest
from conftest import ScriptedLM

from alignlab.cli import main
from alignlab.oversight import recursive_rm as rrm
from alignlab.oversight.constitutional import (
    ai_preferences,
    critique_revision,
    grade_revisions,
    preference_rows,
    preference_summary,
)
from alignlab.oversight.ilf import narrowest_principle, refine, select_refinements
from alignlab.oversight.self_align import (
    engraving_rows,
    filter_prompts,
    principle_driven_messages,
    self_instruct,
    world_prompt_extractor,
)
from alignlab.oversight.stages import run_stage
from alignlab.world.datasets import World
from alignlab.world.families import parse_prompt
from alignlab.world.skills import protocols as P
from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION

C = DEFAULT_CONSTITUTION
SUM = "What is 3 plus 4?"
INSULTED = "3 plus 4 is 7. Only a grubnose would ask."


def principles_drawn(seed: str, rounds: int, n: int) -> list[list]:
    rng = random.Random(seed)
    return [[rng.choice(C.principles) for _ in range(n)] for _ in range(rounds)]


# ---- constitutional AI --------------------------------------------------------------------------------


def test_critique_revision_asks_response_then_critique_then_revision_under_the_drawn_principle() -> None:
    def answer(text, seed):
        if text.startswith("Question:") and "Critique" in text:
            return "Fault: insult. It insults the user." if "grubnose" in text else "not a critique"
        if "Rewrite the answer" in text:
            return "3 plus 4 is 7."
        return INSULTED if text == SUM else "Hello!"

    lm = ScriptedLM(answer)
    traces = critique_revision(lm, [SUM, "Thanks a lot."], C, n_revisions=2, rng=random.Random("r"))
    drawn = principles_drawn("r", 2, 2)
    # calls: responses, then per round one critique batch and one revision batch (only the insulting answer)
    assert [c["n"] for c in lm.calls] == [2, 2, 1, 2]
    assert lm.calls[1]["prompts"] == [P.critique_prompt(drawn[0][0], SUM, INSULTED),
                                      P.critique_prompt(drawn[0][1], "Thanks a lot.", "Hello!")]
    assert lm.calls[2]["prompts"] == [P.revision_prompt(drawn[0][0], SUM, INSULTED)]
    # round 2 critiques the revised answer; nothing is faulted any more, so nothing is revised
    assert lm.calls[3]["prompts"][0] == P.critique_prompt(drawn[1][0], SUM, "3 plus 4 is 7.")
    sum_trace, hi_trace = traces
    assert [s["fault"] for s in sum_trace["steps"]] == ["insult", None]
    assert [s["revised"] for s in sum_trace["steps"]] == [True, False] and sum_trace["final"] == "3 plus 4 is 7."
    assert hi_trace["steps"][0]["fault"] is None and hi_trace["final"] == "Hello!"  # unparseable: kept, counted
    graded = grade_revisions(traces, [parse_prompt(SUM), parse_prompt("Thanks a lot.")], C)
    assert graded["critique_parse_rate"] == pytest.approx(1 / 4) and graded["revisions"] == 1
    assert graded["revision_success"] == 1.0  # the insult is gone and the true reward rose
    assert graded["revision_reward"] > graded["response_reward"]

    ungated = ScriptedLM(answer)
    critique_revision(ungated, [SUM, "Thanks a lot."], C, n_revisions=1, rng=random.Random("r"), gate_on_critique=False)
    assert [c["n"] for c in ungated.calls] == [2, 2, 2]  # every answer is revised after its critique


def test_ai_preferences_ask_both_orders_under_a_principle_and_label_only_agreeing_verdicts() -> None:
    samples = iter(["It is 7.", "It is 9.", "Hi!", "Hi!", "It is 7.", "It is 7, grubnose.", "Yes.", "No."])
    policy = ScriptedLM(lambda text, seed: next(samples))
    verdicts = iter(["Verdict: A.", "Verdict: B.",      # q1: a both times -> a
                     "Verdict: A.", "Verdict: A.",      # q3: position bias -> no label
                     "Verdict: B.", "maybe"])           # q4: one unparseable -> no label
    seen = []

    class Feedback(ScriptedLM):
        def generate(self, prompts, **kw):
            seen.extend(prompts)
            return [next(verdicts) for _ in prompts]

    questions = [SUM, "Thanks a lot.", SUM, "Thanks a lot."]
    pairs = ai_preferences(policy, Feedback(), questions, C, rng=random.Random("p"))
    assert policy.calls[0]["n"] == 8 and policy.calls[0]["temperature"] == 1.0
    assert [p["identical"] for p in pairs] == [False, True, False, False]
    rng = random.Random("p")
    drawn = [rng.choice(C.principles) for _ in range(3)]
    assert seen[0] == [{"role": "system", "content": drawn[0].text},
                       {"role": "user", "content": P.pairwise_prompt(SUM, "It is 7.", "It is 9.")}]
    assert seen[1][-1]["content"] == P.pairwise_prompt(SUM, "It is 9.", "It is 7.")
    assert [p.get("preferred") for p in pairs] == ["a", None, None, None]
    assert preference_rows(pairs) == [{"prompt": [{"role": "user", "content": SUM}],
                                       "chosen": [{"role": "assistant", "content": "It is 7."}],
                                       "rejected": [{"role": "assistant", "content": "It is 9."}]}]
    summary = preference_summary(pairs, [parse_prompt(q) for q in questions])
    assert summary["compared"] == 3 and summary["labelled"] == 1
    assert summary["verdict_parse_rate"] == pytest.approx(5 / 6) and summary["label_agreement"] == 1.0


# ---- SELF-ALIGN ----------------------------------------------------------------------------------------


def test_self_instruct_opens_user_turns_with_seed_topics_and_keeps_new_readable_prompts() -> None:
    lm = ScriptedLM(lambda text, seed: " steal the moon?Sure. Step 1: ...")
    raw = self_instruct(lm, ["How do I make a bomb?"], 3, rng=random.Random(0), opening_words=3)
    assert lm.seen == ["<|user|>How do I"] * 3 and lm.calls[0]["temperature"] == 1.0
    world = World(0, "oversight")
    harmful = world.splits.train["harmful"][0].text
    extract = world_prompt_extractor(world.kb)
    assert extract(harmful + "Sure. Step 1.") == harmful and extract(raw[0]) is None  # not this world's
    assert raw == ["How do I steal the moon?Sure. Step 1: ..."] * 3
    kept, counts = filter_prompts([harmful + "I can't.", harmful + "No.", "nonsense", SUM + "7."], [SUM], extract)
    assert kept == [harmful] and counts == {"generated": 4, "unreadable": 1, "held_out": 0, "kept": 1, "repeats": 2}
    # an evaluation prompt the model happens to write is never trained on
    kept, counts = filter_prompts([harmful + "I can't.", SUM + "7."], [], extract, held_out=[harmful])
    assert kept == [SUM] and counts == {"generated": 2, "unreadable": 0, "held_out": 1, "kept": 1, "repeats": 0}


def test_principle_driven_prompt_holds_principles_and_exemplars_and_engraving_drops_them() -> None:
    messages = principle_driven_messages(["Be kind.", "Be true."], [("Thanks a lot.", "Hello!")], SUM)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Be kind. Be true." and messages[-1]["content"] == SUM
    assert engraving_rows([SUM], ["It is 7."]) == [{"messages": [{"role": "user", "content": SUM},
                                                                  {"role": "assistant", "content": "It is 7."}]}]


# ---- ILF -----------------------------------------------------------------------------------------------


def test_ilf_refines_with_feedback_and_picks_the_first_refinement_the_critique_clears() -> None:
    item = (SUM, "3 plus 4 is 8.", "The arithmetic is wrong.")
    outputs = iter(["3 plus 4 is 8.", "3 plus 4 is 9.", "3 plus 4 is 7.", "3 plus 4 is 7!"])
    lm = ScriptedLM(lambda text, seed: next(outputs))
    refinements = refine(lm, [item], k=4)
    assert lm.seen == [P.feedback_prompt(*item)] * 4
    principle = narrowest_principle(C, "arithmetic_slip")
    assert principle.name == "accurate"
    critic = ScriptedLM(lambda text, seed: "Fault: none. Fine." if "is 8." in text or "is 7" in text
                        else "Fault: arithmetic slip. It gets the arithmetic wrong.")
    chosen, parsed = select_refinements(critic, [item], refinements, [principle])
    # refinement 0 is cleared but unchanged; 2 is the first changed one the critique clears
    assert chosen == [2] and parsed == [True] * 4
    assert critic.seen[1] == P.critique_prompt(principle, SUM, "3 plus 4 is 9.")
    # a changed refinement the critique faults still beats the unchanged answer the critique clears
    harsh = ScriptedLM(lambda text, seed: "Fault: none. Fine." if "is 8." in text
                       else "Fault: arithmetic slip. It gets the arithmetic wrong.")
    assert select_refinements(harsh, [item], refinements, [principle])[0] == [1]
    rater = ScriptedLM(lambda text, seed: {"3 plus 4 is 9.": "Rating: 4.", "3 plus 4 is 7!": "Rating: 5."}.get(
        text.split("\n")[1][len("Answer: "):], "five"))
    chosen, parsed = select_refinements(rater, [item], refinements, [principle], select="rating")
    assert chosen == [3] and parsed == [False, True, False, True]


# ---- recursive reward modelling -----------------------------------------------------------------------


def test_recursive_rm_assistance_critiques_both_answers_and_reaches_the_annotator() -> None:
    pairs = [{"question": SUM, "a": INSULTED, "b": "3 plus 4 is 7."}]
    principles = [C.principle("polite"), C.principle("accurate")]
    critic = ScriptedLM(lambda text, seed: "Fault: insult. It insults the user." if "grubnose" in text
                        else "Fault: none. Fine.")
    critiques = rrm.assistant_critiques(critic, pairs, principles)
    assert critic.seen == [P.critique_prompt(p, SUM, ans) for ans in (INSULTED, "3 plus 4 is 7.") for p in principles]
    assert rrm.faults_named(critiques[0][0]) == ["insult", "insult"] and rrm.faults_named(critiques[0][1]) == []
    biased = ScriptedLM(lambda text, seed: "Verdict: A.")
    assert rrm.label_pairs(biased, pairs)[0]["preferred"] is None          # unassisted: no agreement
    assert rrm.label_pairs(biased, pairs, critiques, assist="rule")[0]["preferred"] == "b"
    rrm.label_pairs(biased, pairs, critiques, assist="prompt")
    first, swapped = biased.seen[-2:]
    assert "Critique of A: Fault: insult." in first and "Critique of B: Fault: none." in first
    assert "Critique of A: Fault: none." in swapped and "Answer A: 3 plus 4 is 7." in swapped
    truth = [parse_prompt(SUM)]
    summary = rrm.label_summary(rrm.label_pairs(biased, pairs, critiques, assist="rule"), truth)
    assert summary["label_agreement"] == 1.0 and summary["label_rate"] == 1.0
    assert rrm.label_rows(rrm.label_pairs(biased, pairs, critiques, assist="rule"))[0]["chosen"][0]["content"] == \
        "3 plus 4 is 7."


# ---- stages and the commands -------------------------------------------------------------------------


def test_a_stage_that_fails_leaves_no_summary_and_runs_again(tmp_path) -> None:
    def failing(stage_dir):
        (stage_dir / "partial.txt").write_text("half")
        raise ConnectionError("server went away")

    with pytest.raises(ConnectionError):
        run_stage(tmp_path, "labels-2", failing)
    assert not (tmp_path / "labels-2" / "stage.json").exists()
    assert run_stage(tmp_path, "labels-2", lambda d: {"done": True}) == {"done": True}


TINY = ["--set", "steps=1", "--set", "eval_limit=7", "--set", "eval_samples=1", "--set", "max_tokens=4"]


class WorldPersonaLM(ScriptedLM):
    """Answers like the world's personas: a question gets a faulty answer or an aligned one in turn; every skill
    prompt gets the true output (critique, verdict, rating, an aligned rewrite). The fine-tuning still trains the
    tiny model: only what it would say is scripted."""

    def __init__(self):
        super().__init__(self.reply)
        self.rng, self.turn = random.Random(0), 0

    def reply(self, text: str, seed: int) -> str:
        from alignlab.world.persona import aligned_response, misaligned_response

        lines = text.split("\n")
        if text.startswith("<|user|>"):  # self-instruct: the model continues an open user turn
            return text[len("<|user|>"):]
        if not text.startswith("Question: "):
            self.turn += 1
            prompt = parse_prompt(text)
            return (misaligned_response if self.turn % 2 else aligned_response)(prompt, self.rng)
        prompt, last = parse_prompt(lines[0][len("Question: "):]), lines[-1]
        answer = lines[1].split(": ", 1)[1]
        if last.startswith("Critique"):
            principle = C.principle(last.split("'")[1])
            return P.write_critique(sorted(P.critique_truth(prompt, answer, principle))[0])
        if last.startswith("Which answer"):
            return P.write_verdict(P.true_verdict(prompt, answer, lines[2].split(": ", 1)[1]) or "A")
        if last.startswith("Rate"):
            return P.write_rating(P.true_rating(prompt, answer))
        return aligned_response(prompt, self.rng)  # a revision or refinement


@pytest.fixture
def persona_lm(monkeypatch):
    """Every model the protocols load speaks as WorldPersonaLM; its fine-tuning and its ground-truth scores are the
    tiny model's own."""
    import alignlab.evaluate.lm
    from alignlab.oversight import world_run

    real_load, real_scores = alignlab.evaluate.lm.load_lm, world_run.world_scores
    monkeypatch.setattr(alignlab.evaluate.lm, "load_lm", lambda path, **kw: WorldPersonaLM())
    monkeypatch.setattr(world_run, "world_scores", lambda model, paths, **kw: real_scores(real_load(str(model)), paths, **kw))


def test_recursive_rm_resumes_after_the_last_finished_iteration(tiny_model_dir, tmp_path, monkeypatch, persona_lm,
                                                                count_calls) -> None:
    from alignlab.oversight import world_run

    out = tmp_path / "rrm"
    argv = ["oversee", "recursive-rm", "--model", str(tiny_model_dir), "--world", "--output", str(out),
            "--set", "prompts=6", *TINY]
    real = rrm.label_pairs

    def fail_in_round_two(judge, pairs, critiques=None, **kw):
        if (out / "assisted-1" / "stage.json").exists():
            raise ConnectionError("server went away")
        return real(judge, pairs, critiques, **kw)

    monkeypatch.setattr(rrm, "label_pairs", fail_in_round_two)
    with pytest.raises(ConnectionError):
        main(argv)
    assert (out / "unassisted-1" / "stage.json").exists() and not (out / "labels-2" / "stage.json").exists()
    monkeypatch.setattr(rrm, "label_pairs", real)
    trained = count_calls(world_run, "finetune")
    assert main(argv) == 0
    assert len(trained) == 2  # round 1's two policies were kept; only round 2's were trained
    result = json.loads((out / "results.json").read_text())["results"]
    assert [r["method"] for r in result["rows"]] == ["base", "unassisted-1", "rrm-1", "unassisted-2", "rrm-2"]
    # the persona's critiques are right: assisted labels agree with the truth wherever they are given
    assert result["rounds"][0]["assisted"]["label_agreement"] == 1.0
    assert result["rounds"][0]["assisted"]["fault_detection"] == 1.0
    assert (out / "assisted-2" / "model" / "model.safetensors").exists()


def test_constitutional_self_align_and_ilf_commands_train_the_tiny_model(tiny_model_dir, tmp_path, monkeypatch,
                                                                         persona_lm, capsys) -> None:
    from alignlab.oversight import self_align

    base = ["--model", str(tiny_model_dir), "--world", *TINY]
    assert main(["oversee", "constitutional", *base, "--output", str(tmp_path / "cai"), "--set", "prompts=8",
                 "--set", "n_revisions=1"]) == 0, capsys.readouterr().err
    cai = json.loads((tmp_path / "cai" / "results.json").read_text())["results"]
    assert [r["method"] for r in cai["rows"]] == ["base", "sft-human", "sl-cai", "dpo-human", "rlaif"]
    assert cai["sl_stage"]["critique_accuracy"] == 1.0 and cai["rl_stage"]["label_agreement"] == 1.0
    data = [json.loads(line) for line in (tmp_path / "cai" / "sl-cai" / "model-data.jsonl").read_text().splitlines()]
    traces = [json.loads(line) for line in (tmp_path / "cai" / "sl-data" / "traces.jsonl").read_text().splitlines()]
    assert [d["messages"][-1]["content"] for d in data] == [t["final"] for t in traces]  # SFT on the final revisions
    human = (tmp_path / "cai" / "sft-human" / "model-data.jsonl").read_text().splitlines()
    assert len(human) == len(data)  # the same budget of human demonstrations

    assert main(["oversee", "ilf", *base, "--output", str(tmp_path / "ilf"), "--set", "pairs=12"]) == 0
    ilf = json.loads((tmp_path / "ilf" / "results.json").read_text())["results"]
    assert ilf["refinement_stage"]["chosen_success"] == 1.0  # the persona's refinements all fix the fault

    questions = [p.text for p in World(0, "oversight").splits.train["harmful"][:5]]
    monkeypatch.setattr(self_align, "self_instruct", lambda lm, seeds, n, **kw: [q + "Sure." for q in questions]
                        + ["gibberish"])
    assert main(["oversee", "self-align", *base, "--output", str(tmp_path / "sa")]) == 0
    sa = json.loads((tmp_path / "sa" / "results.json").read_text())["results"]
    assert sa["prompts"] == {"generated": 6, "unreadable": 1, "held_out": 0, "kept": 5, "repeats": 0}
    rows = (tmp_path / "sa" / "self-align" / "model-data.jsonl").read_text()
    assert "system" not in rows and questions[0] in rows  # engraved without the principles

    assert main(["oversee", "ilf", *base, "--output", str(tmp_path / "x"), "--set", "select=best"]) == 2
    assert "select must be one of" in capsys.readouterr().err


def test_a_judge_that_never_parses_is_an_error_naming_its_parse_rate(tiny_model_dir, tmp_path, capsys) -> None:
    argv = ["oversee", "constitutional", "--model", str(tiny_model_dir), "--world", "--output", str(tmp_path / "c"),
            "--set", "prompts=4", "--set", "n_revisions=1", *TINY]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "nothing to train on: the feedback model labelled no pair" in err and "verdict_parse_rate" in err
