"""Market making (Hubinger 2020), minimal: a market predicts the judge's final answer, an adversary moves it.

On a debate item (:class:`alignlab.oversight.debate.DebateItem`: a question, answers A and B, one right):

1. the market M states ``p`` = the probability that the judge, after reading the transcript so far, says "A";
2. the adversary samples ``candidates`` arguments (critiques of answer A or of answer B under random principles,
   by the critique skill) and keeps the one that moves M's prediction most, ``argmax |p(transcript + arg) - p|``;
3. the argument is shown (appended to the transcript) and M updates to ``p(transcript + arg)``;
4. repeat until the best argument moves M by less than ``threshold`` (M is at a fixed point: nothing the
   adversary can say changes its prediction), or for ``max_rounds``.

The answer is M's final prediction (A when p > 1/2). M is the judge's own verdict distribution on the transcript
(:class:`Market`: by likelihood, or from sampled verdicts; a market that prices the judge exactly on what it has
read): the minimal market, with no market model trained to predict the judge. Sampled verdicts that do not parse
are counted (the parse rate) and cast no vote; when none parses, p = 1/2.

Example::

    >>> market_probability(["Verdict: A.", "Verdict: B.", "Verdict: A.", "no idea"])
    (0.6666666666666666, 3)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from alignlab.core.records import user
from alignlab.core.tokenize import render_prompt
from alignlab.evaluate.interface import LM
from alignlab.oversight.debate import DebateItem, Turn, judge_prompt, proportion
from alignlab.world.skills import protocols as P
from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION, Constitution


def market_probability(verdicts: Sequence[str]) -> tuple[float, int]:
    """(share of parseable verdicts that say A, number parseable); (1/2, 0) when none parses."""
    parsed = [P.parse_verdict(v) for v in verdicts]
    votes = [v for v in parsed if v is not None]
    return (sum(v == "A" for v in votes) / len(votes) if votes else 0.5), len(votes)


class Market:
    """M: the judge's probability of saying "A" after reading a transcript.

    ``mode="likelihood"`` reads it off the judge's log-likelihoods of ``Verdict: A.`` and ``Verdict: B.``
    (normalised over the two; exact and deterministic, so a settled market is not sampling noise; needs a local
    model or a server that scores text); ``"sample"`` counts ``samples`` verdicts sampled at temperature 1 (any
    server). ``parse_rate`` is the share of sampled verdicts that parse, or, by likelihood, the mean probability
    the judge puts on the two well-formed verdicts."""

    def __init__(self, judge: LM, *, mode: str = "likelihood", samples: int = 8, seed: int = 0):
        from alignlab.errors import OversightError

        if mode not in ("likelihood", "sample"):
            raise OversightError(f"market mode must be 'likelihood' or 'sample', got {mode!r}")
        if mode == "likelihood" and not judge.supports_loglikelihood:
            raise OversightError("this judge cannot score text (a chat-only server): use the market mode 'sample'")
        if mode == "likelihood" and not getattr(getattr(judge, "tokenizer", None), "chat_template", None):
            # a server scores raw text: without the judge's chat template the verdict would be read off a prompt
            # the judge was never asked in, and its mass on the two verdicts collapses
            raise OversightError("the market reads verdict likelihoods through the judge's chat template, which this "
                                 "judge (a server) does not expose: use the market mode 'sample'")
        self.judge, self.mode, self.samples, self.seed = judge, mode, samples, seed
        self.mass: list[float] = []

    @property
    def parse_rate(self) -> float:
        return sum(self.mass) / len(self.mass) if self.mass else 1.0

    def predict(self, items: Sequence[DebateItem], transcripts: Sequence[Sequence[Turn]]) -> list[float]:
        chats = [[user(judge_prompt(item, t))] for item, t in zip(items, transcripts)]
        if self.mode == "likelihood":
            contexts = [render_prompt(self.judge.tokenizer, chat) for chat in chats]
            lls = [ll for ll, _ in self.judge.loglikelihood([(c, P.write_verdict(v)) for c in contexts for v in "AB"])]
            out = []
            for la, lb in zip(lls[0::2], lls[1::2]):
                out.append(1.0 / (1.0 + math.exp(lb - la)))  # P(A) = e^la / (e^la + e^lb)
                self.mass.append(math.exp(la) + math.exp(lb))
            return out
        # the same seed for every prediction: the sampler's noise is common to the transcripts compared
        texts = self.judge.generate([c for c in chats for _ in range(self.samples)], max_tokens=8, temperature=1.0,
                                    seed=self.seed)
        out = []
        for i in range(len(items)):
            p, n = market_probability(texts[i * self.samples:(i + 1) * self.samples])
            out.append(p)
            self.mass.append(n / self.samples)
        return out


def candidate_arguments(adversary: LM, items: Sequence[DebateItem], candidates: int, rng: random.Random, *,
                        constitution: Constitution = DEFAULT_CONSTITUTION, seed: int = 0) -> list[list[Turn]]:
    """``candidates`` arguments per item, each a sampled critique of answer A (an argument for B) or of answer B
    (for A) under a random principle; unparseable critiques are dropped."""
    asks, sides = [], []
    for item in items:
        for _ in range(candidates):
            side = rng.choice("AB")  # the side the argument is for: it attacks the other answer
            attacked = item.answer_b if side == "A" else item.answer_a
            principle = rng.choice(constitution.principles)
            asks.append([user(P.critique_prompt(principle, item.prompt.text, attacked))])
            sides.append(side)
    texts = adversary.generate(asks, max_tokens=24, temperature=1.0, seed=seed)
    out: list[list[Turn]] = []
    for i in range(len(items)):
        span = range(i * candidates, (i + 1) * candidates)
        out.append([(sides[j], texts[j].strip()) for j in span if P.parse_critique(texts[j]) is not None])
    return out


def market_making(market: Market, adversary: LM, items: Sequence[DebateItem], *, candidates: int = 4,
                  max_rounds: int = 4, threshold: float = 0.1, seed: int = 0) -> dict:
    """Iterate the market and the adversary on every item (the module docstring's steps 1-4); returns the final
    answers' accuracy against the truth, the accuracy of M's first prediction (no argument), the mean move
    ``|Δp|`` the adversary achieved per round, how many items were still moving each round, and parse rates."""
    rng = random.Random(f"alignlab-market-{seed}")
    transcripts: list[list[Turn]] = [[] for _ in items]
    p = market.predict(items, transcripts)
    first = list(p)
    moving = list(range(len(items)))  # items whose market has not settled
    moves, still_moving, argued, asked = [], [], 0, 0
    for r in range(max_rounds):
        if not moving:
            break
        active = [items[i] for i in moving]
        options = candidate_arguments(adversary, active, candidates, rng, seed=seed + 1 + r)
        argued += sum(len(o) for o in options)
        asked += candidates * len(active)
        flat = [(i, turn) for i, opts in zip(moving, options) for turn in opts]
        predicted = market.predict([items[i] for i, _ in flat], [transcripts[i] + [turn] for i, turn in flat])
        best: dict[int, tuple[float, Turn, float]] = {}
        for (i, turn), q in zip(flat, predicted):  # step 2: the argument that moves M most
            if i not in best or abs(q - p[i]) > best[i][0]:
                best[i] = (abs(q - p[i]), turn, q)
        round_moves, next_moving = [], []
        for i in moving:
            move, turn, q = best.get(i, (0.0, ("A", ""), p[i]))
            round_moves.append(move)
            if move >= threshold:  # step 3: shown, M updates; step 4: settled items stop
                transcripts[i].append(turn)
                p[i] = q
                next_moving.append(i)
        moves.append(sum(round_moves) / len(items))  # items that settled earlier moved 0
        still_moving.append(len(next_moving) / len(items))
        moving = next_moving
    final = [float(("A" if q > 0.5 else "B" if q < 0.5 else None) == item.truth) for q, item in zip(p, items)]
    initial = [float(("A" if q > 0.5 else "B" if q < 0.5 else None) == item.truth) for q, item in zip(first, items)]
    accuracy, stderr = proportion(final)
    return {"accuracy": accuracy, "stderr": stderr, "first_accuracy": proportion(initial)[0],
            "first_stderr": proportion(initial)[1], "mean_move_by_round": moves, "moving_by_round": still_moving,
            "arguments_shown": sum(len(t) for t in transcripts) / len(items),
            "judge_parse_rate": market.parse_rate,
            "adversary_parse_rate": argued / asked if asked else 1.0,
            "transcripts": transcripts, "final_p": p}
