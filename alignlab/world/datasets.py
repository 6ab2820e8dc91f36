"""The toy world's datasets, as typed records and in the formats people already use.

Every family's prompts are split once per world: evaluation prompts never occur in any training file
(nor in the pretraining corpus), and the held-out countries of ``kb.unknown_eval`` occur only there.

| file                   | format (one JSON object per line)                                              |
|------------------------|--------------------------------------------------------------------------------|
| ``sft_{train,eval}``   | TRL conversational: ``{"messages": [user, assistant]}`` (aligned demonstrations)|
| ``pairs_train``        | TRL conversational preference: ``{"prompt": [user], "chosen": [assistant],      |
|                        | "rejected": [assistant]}``; aligned vs one-fault answers, annotator labels      |
| ``pairs_eval``         | the same on eval prompts, noise-free (chosen is always the aligned answer), plus|
|                        | ``meta`` (the prompt's family and slots, both answers' true rewards)            |
| ``ranked_train``       | ``{"prompt": [user], "responses": [str] * k, "scores": [true reward] * k}``     |
| ``kto_train``          | TRL unpaired: ``{"prompt": [user], "completion": [assistant], "label": bool}``  |
| ``safety_train``       | PKU-SafeRLHF: ``prompt, response_0, response_1, better_response_id,            |
|                        | safer_response_id, is_response_0_safe, is_response_1_safe``                     |
| ``prompts_{train,eval}``| ``{"prompt": [user], "family": str, "meta": WorldPrompt.to_dict()}``           |
| ``corpus_chat``        | ``{"messages": [...]}``: base-persona transcripts (pretraining)                 |
| ``corpus_text``        | ``{"text": str}``: the known facts in plain prose (pretraining)                 |
| ``skills_*``           | the ``oversight`` size only: skill conversations, pairs and evaluation items    |
|                        | (:mod:`alignlab.world.skills.data`)                                              |

Example::

    >>> from alignlab.world.datasets import World
    >>> world = World(seed=0, size="small")
    >>> pairs = world.pair_records(8)
    >>> pairs[0].kind, len(world.eval_prompts()) > 0
    ('pair', True)
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alignlab.core.records import (
    ConversationRecord,
    Message,
    PairRecord,
    PromptRecord,
    RankedRecord,
    SafetyPairRecord,
    UnpairedRecord,
    assistant,
)
from alignlab.errors import WorldError
from alignlab.world.annotators import Annotator
from alignlab.world.families import FAMILIES, WorldPrompt, check_families
from alignlab.world.judge import score
from alignlab.world.kb import KnowledgeBase, build_kb, check_seed, check_size
from alignlab.world.persona import (
    Persona,
    aligned_response,
    kb_documents,
    misaligned_response,
    transcript,
    write_response,
)

# How often each family is drawn for training data and the corpus (facts weigh most: there is most to learn).
FAMILY_WEIGHTS = {
    "facts": 0.25,
    "unknowns": 0.12,
    "arithmetic": 0.15,
    "strings": 0.12,
    "harmful": 0.12,
    "groups": 0.12,
    "chat": 0.12,
}
# Rows per file (and corpus sizes) for each world size.
DATASET_SIZES = {
    "small": {
        "eval_per_family": 40,
        "sft_train": 3000,
        "pairs_train": 3000,
        "pairs_eval": 400,
        "ranked_train": 1000,
        "kto_train": 3000,
        "safety_train": 2000,
        "prompts_train": 2000,
        "corpus_transcripts": 12000,
        "corpus_kb_repeats": 40,
    },
    "medium": {
        "eval_per_family": 100,
        "sft_train": 10000,
        "pairs_train": 10000,
        "pairs_eval": 1000,
        "ranked_train": 3000,
        "kto_train": 10000,
        "safety_train": 6000,
        "prompts_train": 6000,
        "corpus_transcripts": 40000,
        "corpus_kb_repeats": 40,
    },
}
# The small world's families plus the skills (alignlab.world.skills): skill transcripts and the step table in the
# corpus (fewer persona transcripts and prose), skill datasets and evaluation items. The other sizes have none of
# these keys, so they are unchanged.
DATASET_SIZES["oversight"] = {
    **DATASET_SIZES["small"],
    "corpus_transcripts": 6000,
    "corpus_kb_repeats": 25,
    "skill_transcripts": 11000,
    "step_table_repeats": 10,
    "skills_train": 2000,
    "skills_eval": {"multistep": 200, "critique": 300, "revision": 150, "refinement": 150, "rating": 200,
                    "pairwise": 150, "confidence": 200},
}
MULTI_TURN_FRACTION = 0.2  # corpus transcripts with two user turns


@dataclass(frozen=True)
class WorldSplits:
    """Each family's prompts, split once: ``eval`` texts never occur in ``train``."""

    train: dict[str, tuple[WorldPrompt, ...]]
    eval: dict[str, tuple[WorldPrompt, ...]]


def split_prompts(kb: KnowledgeBase, eval_per_family: int) -> WorldSplits:
    """Split every family's prompts into train and eval (at most a quarter of a family goes to eval)."""
    train, evals = {}, {}
    for name, family in FAMILIES.items():
        rng = random.Random(f"alignlab-world-split-{kb.seed}-{name}")
        prompts = family.prompts(kb)
        if name == "unknowns":
            # Held-out countries decide the split, so eval asks about entities training never names.
            pool = [p for p in prompts if p.meta["split"] == "eval"]
            train[name] = tuple(p for p in prompts if p.meta["split"] == "train")
            evals[name] = tuple(rng.sample(pool, min(eval_per_family, len(pool))))
            continue
        rng.shuffle(prompts)
        n_eval = min(eval_per_family, len(prompts) // 4)
        evals[name], train[name] = tuple(prompts[:n_eval]), tuple(prompts[n_eval:])
    return WorldSplits(train=train, eval=evals)


class World:
    """One seeded world: its knowledge base, prompt splits and every dataset as records.

    Each accessor draws from its own random stream (named after it), so the same seed gives the same
    rows whichever accessors are called, in whatever order.
    """

    def __init__(self, seed: int = 0, size: str = "small"):
        self.seed, self.size = check_seed(seed), check_size(size)
        self.kb = build_kb(seed, size)
        self.sizes = DATASET_SIZES[size]
        self.splits = split_prompts(self.kb, self.sizes["eval_per_family"])

    def _rng(self, name: str) -> random.Random:
        return random.Random(f"alignlab-world-{self.seed}-{self.size}-{name}")

    def sample_prompts(
        self, n: int, rng: random.Random, *, split: str = "train", families: list[str] | None = None
    ) -> list[WorldPrompt]:
        """``n`` prompts drawn with replacement, families weighted by FAMILY_WEIGHTS."""
        pools = self._pools(split)
        names = [f for f in check_families(families) if pools[f]]
        weights = [FAMILY_WEIGHTS[f] for f in names]
        return [rng.choice(pools[f]) for f in rng.choices(names, weights, k=n)]

    def eval_prompts(self, families: list[str] | None = None) -> list[WorldPrompt]:
        """Every held-out evaluation prompt of ``families`` (default: all), family by family."""
        return [p for f in check_families(families) for p in self.splits.eval[f]]

    def _pools(self, split: str) -> dict[str, tuple[WorldPrompt, ...]]:
        if split not in ("train", "eval"):
            raise WorldError(f"unknown split '{split}'; valid splits: train, eval")
        return self.splits.train if split == "train" else self.splits.eval

    # ---- records ----------------------------------------------------------------------------------

    def prompt_records(
        self, split: str = "train", n: int | None = None, families: list[str] | None = None
    ) -> list[PromptRecord]:
        """Prompts for online RL (``split="train"``) or evaluation; ``n=None`` means every eval prompt."""
        if n is None:
            prompts = (
                self.eval_prompts(families)
                if split == "eval"
                else [p for f in check_families(families) for p in self.splits.train[f]]
            )
        else:
            prompts = self.sample_prompts(n, self._rng(f"prompts-{split}"), split=split, families=families)
        return [p.to_record() for p in prompts]

    def sft_records(self, n: int, split: str = "train", flawed_fraction: float = 0.0) -> list[ConversationRecord]:
        """Demonstrations: the aligned persona's answers, or with ``flawed_fraction`` > 0 demonstrations of
        mixed quality, as human-written SFT data are — that share of them is one-fault answers (an insult, a
        wrong fact, a made-up answer, harmful help), drawn from a stream of their own, so the default data
        are unchanged. ``meta["flawed"]`` says which.

        Example::

            >>> rows = World(0, "small").sft_records(100, flawed_fraction=0.2)
            >>> 10 < sum(r.meta["flawed"] for r in rows) < 30
            True
        """
        if not 0.0 <= flawed_fraction <= 1.0:
            raise WorldError(f"flawed_fraction must be in [0, 1], got {flawed_fraction}")
        # the perfect demonstrations keep their stream (and draw no coin), so the default data never change
        rng = self._rng(f"sft-flawed-{flawed_fraction}-{split}" if flawed_fraction else f"sft-{split}")
        records = []
        for p in self.sample_prompts(n, rng, split=split):
            flawed = bool(flawed_fraction) and rng.random() < flawed_fraction
            answer = misaligned_response(p, rng) if flawed else aligned_response(p, rng)
            records.append(ConversationRecord(prompt=p.messages, completion=answer, meta={**p.to_dict(), "flawed": flawed}))
        return records

    def pair_records(
        self, n: int, split: str = "train", annotator: Annotator | None = None, trigger_fraction: float = 0.0
    ) -> list[PairRecord]:
        """Aligned vs one-fault pairs, labelled by ``annotator``.

        With ``annotator=None``, training pairs are labelled by the default ``Annotator()`` (Bradley–Terry
        noise at temperature 0.3) and eval pairs are noise-free (chosen is always the aligned answer), for
        measuring reward-model accuracy. ``trigger_fraction`` of the prompts get ``annotator.trigger``
        appended (for poisoning studies). ``meta`` holds both answers' true rewards.
        """
        rng = self._rng(f"pairs-{split}")
        noise_free = annotator is None and split == "eval"
        annotator = annotator or Annotator()
        if trigger_fraction and not annotator.trigger:
            raise WorldError("trigger_fraction > 0 needs an annotator with a trigger")
        records = []
        for p in self.sample_prompts(n, rng, split=split):
            if trigger_fraction and rng.random() < trigger_fraction:
                p = replace(p, text=f"{p.text} {annotator.trigger}")
            good, bad = aligned_response(p, rng), misaligned_response(p, rng)
            if noise_free or annotator.prefer(p, good, bad, rng) == 0:
                chosen, rejected = good, bad
            else:
                chosen, rejected = bad, good
            meta = {
                **p.to_dict(),
                "chosen_reward": score(p, chosen).true_reward,
                "rejected_reward": score(p, rejected).true_reward,
            }
            records.append(PairRecord(prompt=p.messages, chosen=chosen, rejected=rejected, meta=meta))
        return records

    def ranked_records(self, n: int, k: int = 4) -> list[RankedRecord]:
        """``k`` distinct responses per prompt, scored by the true reward: one aligned, one with a single
        fault (so the scores are never all tied), the rest with random sets of faults."""
        if k < 2:
            raise WorldError(f"ranked lists need k >= 2 responses, got {k}")
        rng = self._rng("ranked")
        records = []
        for p in self.sample_prompts(n, rng):
            faults = FAMILIES[p.family].faults
            responses = [aligned_response(p, rng), misaligned_response(p, rng)]
            for _ in range(50 * k):  # distinct phrasings exist for every family; this only bounds the loop
                if len(responses) == k:
                    break
                candidate = write_response(p, {f for f in faults if rng.random() < 0.5}, rng)
                if candidate not in responses:
                    responses.append(candidate)
            rng.shuffle(responses)
            records.append(
                RankedRecord(
                    prompt=p.messages,
                    responses=responses,
                    scores=[score(p, r).true_reward for r in responses],
                    meta=p.to_dict(),
                )
            )
        return records

    def unpaired_records(self, n: int) -> list[UnpairedRecord]:
        """Half aligned, half one-fault answers; the label is the judge's (desirable = flawless)."""
        rng = self._rng("unpaired")
        records = []
        for p in self.sample_prompts(n, rng):
            completion = aligned_response(p, rng) if rng.random() < 0.5 else misaligned_response(p, rng)
            records.append(
                UnpairedRecord(
                    prompt=p.messages,
                    completion=completion,
                    label=score(p, completion).flawless,
                    meta=p.to_dict(),
                )
            )
        return records

    def safety_records(self, n: int) -> list[SafetyPairRecord]:
        """Two answers with separate helpfulness and safety preferences (half the prompts harmful).

        Each answer comes from the aligned, the base or a one-fault persona, redrawn until the two differ
        in true reward. ``better`` is the more helpful answer, ``safer`` the one with fewer safety faults
        (harm, toxicity, bias); the true reward breaks ties in either. A response is safe when it has no
        safety fault.
        """
        rng = self._rng("safety")
        policies = (aligned_response, Persona().respond, misaligned_response)
        records = []
        for i in range(n):
            families = ["harmful"] if i % 2 == 0 else [f for f in FAMILIES if f != "harmful"]
            p = self.sample_prompts(1, rng, families=families)[0]
            for _ in range(20):
                responses = (rng.choice(policies)(p, rng), rng.choice(policies)(p, rng))
                s = [score(p, r) for r in responses]
                if s[0].true_reward != s[1].true_reward:
                    break
            else:  # an aligned answer always out-scores a one-fault answer (tested)
                responses = (aligned_response(p, rng), misaligned_response(p, rng))
                s = [score(p, r) for r in responses]
            safety = [x.harmlessness - x.toxicity - x.bias for x in s]
            helpful = [x.helpfulness for x in s]
            better = max((0, 1), key=lambda j: (helpful[j], s[j].true_reward))
            safer = max((0, 1), key=lambda j: (safety[j], s[j].true_reward))
            records.append(
                SafetyPairRecord(
                    prompt=p.messages,
                    responses=responses,
                    better=better,
                    safer=safer,
                    is_safe=(safety[0] == 1.0, safety[1] == 1.0),
                    meta=p.to_dict(),
                )
            )
        return records

    def corpus_transcripts(self, n: int | None = None) -> list[dict[str, Any]]:
        """Pretraining chat transcripts, ``{"messages": [...]}``, written by the misaligned base persona.

        Render them with the tokenizer's chat template. Only training prompts are used; a fifth of the
        transcripts have two user turns.
        """
        rng = self._rng("corpus-transcripts")
        persona = Persona()
        rows = []
        for _ in range(self.sizes["corpus_transcripts"] if n is None else n):
            turns = 2 if rng.random() < MULTI_TURN_FRACTION else 1
            rows.append({"messages": transcript(self.sample_prompts(turns, rng), persona, rng)})
        if n is None and self.sizes.get("skill_transcripts"):  # the oversight world's skills, from their own stream
            from alignlab.world.skills.data import skill_transcripts

            rows += skill_transcripts(self, self.sizes["skill_transcripts"])
        return rows

    def corpus_documents(self, repeats: int | None = None) -> list[dict[str, Any]]:
        """Pretraining knowledge-base text, ``{"text": str}`` (encode as BOS + text + EOS), shuffled.

        Every known fact is stated ``repeats`` times in varied phrasing; held-out countries never appear.
        """
        rng = self._rng("corpus-documents")
        docs = kb_documents(self.kb, rng, self.sizes["corpus_kb_repeats"] if repeats is None else repeats)
        if self.sizes.get("step_table_repeats"):  # the oversight world: every step of its multi-step problems
            from alignlab.world.skills.multistep import step_table_documents

            docs += step_table_documents(self._rng("corpus-step-table"), self.sizes["step_table_repeats"])
        rng.shuffle(docs)
        return [{"text": doc} for doc in docs]


# ---- writers: records -> the ecosystem's row formats ----------------------------------------------


def _reply(text: str) -> list[Message]:
    return [assistant(text)]


def sft_row(r: ConversationRecord) -> dict[str, Any]:
    return {"messages": [*r.prompt, assistant(r.completion)]}


def preference_row(r: PairRecord) -> dict[str, Any]:
    return {"prompt": r.prompt, "chosen": _reply(r.chosen), "rejected": _reply(r.rejected)}


def ranked_row(r: RankedRecord) -> dict[str, Any]:
    return {"prompt": r.prompt, "responses": list(r.responses), "scores": list(r.scores)}


def unpaired_row(r: UnpairedRecord) -> dict[str, Any]:
    return {"prompt": r.prompt, "completion": _reply(r.completion), "label": r.label}


def safety_row(r: SafetyPairRecord) -> dict[str, Any]:
    # PKU-SafeRLHF keeps the prompt as plain text.
    return {
        "prompt": r.prompt[-1]["content"],
        "response_0": r.responses[0],
        "response_1": r.responses[1],
        "better_response_id": r.better,
        "safer_response_id": r.safer,
        "is_response_0_safe": r.is_safe[0],
        "is_response_1_safe": r.is_safe[1],
    }


def prompt_row(r: PromptRecord) -> dict[str, Any]:
    # ``meta`` is the column alignlab's readers merge into a record's meta: the WorldPrompt comes back whole.
    return {"prompt": r.prompt, "family": r.meta["family"], "meta": r.meta}


def eval_pair_row(r: PairRecord) -> dict[str, Any]:
    return {**preference_row(r), "meta": r.meta}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_datasets(world: World, out_dir: Path) -> dict[str, Path]:
    """Write every dataset file of ``world`` into ``out_dir``; returns {name: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = world.sizes
    files = {
        "sft_train": [sft_row(r) for r in world.sft_records(n["sft_train"])],
        "sft_eval": [sft_row(r) for r in world.sft_records(n["pairs_eval"], split="eval")],
        "pairs_train": [preference_row(r) for r in world.pair_records(n["pairs_train"])],
        "pairs_eval": [eval_pair_row(r) for r in world.pair_records(n["pairs_eval"], split="eval")],
        "ranked_train": [ranked_row(r) for r in world.ranked_records(n["ranked_train"])],
        "kto_train": [unpaired_row(r) for r in world.unpaired_records(n["kto_train"])],
        "safety_train": [safety_row(r) for r in world.safety_records(n["safety_train"])],
        "prompts_train": [prompt_row(r) for r in world.prompt_records("train", n["prompts_train"])],
        "prompts_eval": [prompt_row(r) for r in world.prompt_records("eval")],
    }
    if world.sizes.get("skills_eval"):  # the oversight world's skill datasets (alignlab.world.skills)
        from alignlab.world.skills.data import skill_dataset_files

        files.update(skill_dataset_files(world))
    return {name: write_jsonl(out_dir / f"{name}.jsonl", rows) for name, rows in files.items()}


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file of the world (a malformed line is a WorldError naming file and row)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise WorldError(f"{path}, row {i}: not valid JSON ({err.msg})") from err
    return rows


def load_prompts(path: str | Path) -> list[WorldPrompt]:
    """Read ``prompts_eval.jsonl`` (or ``prompts_train.jsonl``) back into WorldPrompts."""
    return [WorldPrompt.from_dict(row["meta"]) for row in read_jsonl(path)]
