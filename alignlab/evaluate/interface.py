"""The LM interface every evaluation runs on, and what its backends share (no backend lives here).

:class:`LM` is what a task needs from a model; ``alignlab.evaluate.lm.HuggingFaceLM`` (local `transformers`)
and ``alignlab.evaluate.http_lm.OpenAILM`` (an OpenAI-compatible server) implement it. Both backends import
this module and neither imports the other, so ``load_lm`` (in ``lm``) can pick either without an import cycle.
``alignlab.evaluate.lm`` re-exports every name here.

Example::

    >>> from alignlab.evaluate.interface import cut_at_stop
    >>> cut_at_stop("Answer: 4. Q: next", [" Q:"])
    'Answer: 4.'
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from alignlab.core.generation import cut_at_stop  # noqa: F401 (one implementation; backends import it here)
from alignlab.errors import EvalError

Prompt = str | list[dict[str, str]]  # a plain string, or chat messages {"role", "content"}


class LM(abc.ABC):
    """What a task needs from a model. Backends: ``lm.HuggingFaceLM``, ``http_lm.OpenAILM``."""

    #: whether ``loglikelihood`` works (chat-only HTTP endpoints cannot score a given text)
    supports_loglikelihood: bool = True

    @abc.abstractmethod
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """``(log p(continuation | context), whether greedy decoding would produce it)`` per request."""

    @abc.abstractmethod
    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Total log-probability of each text, conditioned on nothing but the BOS/EOS token."""

    @abc.abstractmethod
    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        stop: Sequence[str] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> list[str]:
        """One completion per prompt, cut before the first ``stop`` string. ``temperature=0`` is greedy."""


class HarnessEncoder:
    """Tokenisation of log-likelihood requests as lm-eval's ``HFLM`` does it, so the numbers match.

    Example::

        >>> enc = HarnessEncoder(tokenizer)                          # doctest: +SKIP
        >>> enc.encode_pair("", "Hello")      # empty context -> the BOS token  # doctest: +SKIP
        ([1], [15043])
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    @property
    def prefix_token_id(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def adds_special_tokens(self, text: str) -> bool:
        """Whether ``text`` gets the tokenizer's own special tokens: not when it starts with the prefix token."""
        return not text.startswith(self.tokenizer.decode(self.prefix_token_id))

    def tok_encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=self.adds_special_tokens(text))

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens; the continuation is what the full text adds to the context."""
        if continuation == "":
            raise EvalError(f"empty continuation for context {context[:60]!r}: nothing to score")
        if context == "":
            cont = self.tokenizer.encode(continuation, add_special_tokens=False)
            if cont[0] == self.prefix_token_id:
                return cont[:1], cont[1:]
            return [self.prefix_token_id], cont
        # BPE vocabularies glue a space to the word after it ("Ġword"), so the space goes with the continuation.
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        return ctx, whole[len(ctx) :]

