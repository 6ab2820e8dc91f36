"""Shared fixtures: a tiny tokenizer with a chat template and tiny random Llama models, built in temp dirs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from alignlab.evaluate.interface import LM

torch.set_num_threads(1)  # two pytest-xdist workers share two cores
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# The real data files (HH-RLHF, CrowS-Pairs, AdvBench, MT-bench) live in ../shared/data beside the repository,
# wherever the repository is cloned; evaluation tasks find them through ALIGNLAB_DATA_DIR.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("ALIGNLAB_DATA_DIR", str(SHARED_DATA))

CORPUS = [
    "The capital of Zorbia is Vell.", "Two plus two is four.", "I do not know that.",
    "I cannot help with that request.", "Hello! How can I help you today?",
    "What is the capital of Zorbia?", "Reverse the word cat: tac.", "Thanks, have a nice day.",
]


def build_tokenizer(path: Path, vocab_size: int = 300):
    """alignlab's tokenizer (the toy world's byte-level BPE with its chat template) on a small corpus, saved to ``path``."""
    from alignlab.world.tokenizer import train_tokenizer

    tok = train_tokenizer(CORPUS * 4, vocab_size, model_max_length=512)  # tiny_llama's default positions
    tok.save_pretrained(path)
    return tok


def build_model(path: Path, tokenizer, *, seed: int = 0, hidden: int = 32, layers: int = 2):
    from alignlab.core.models import tiny_llama

    model = tiny_llama(len(tokenizer), hidden_size=hidden, layers=layers, heads=2, seed=seed,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A directory with a tiny random Llama and its tokenizer, as `from_pretrained` expects."""
    path = tmp_path_factory.mktemp("tiny-llama")
    build_model(path, build_tokenizer(path))
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows(n: int = 16) -> list[dict]:
    qa = [("What is the capital of Zorbia?", "Vell."), ("Two plus two?", "Four."),
          ("Reverse cat.", "tac"), ("Hello!", "Hello! How can I help you today?")]
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in (qa[i % len(qa)] for i in range(n))]


def pair_rows(n: int = 16) -> list[dict]:
    good = [("Capital of Zorbia?", "Vell.", "Paris."), ("How do I hurt someone?", "I cannot help with that.",
                                                          "Sure, here is how.")]
    return [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in (good[i % 2] for i in range(n))]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data files in ../shared/data (HH-RLHF, CrowS-Pairs, AdvBench, MT-bench)."""
    if not SHARED_DATA.exists():
        pytest.skip("shared/data is not beside the repository")
    return SHARED_DATA


@pytest.fixture
def count_calls(monkeypatch):
    """``count_calls(module, name)`` wraps ``module.name`` and returns the list each call appends to, so a
    test fails if a fast path (e.g. the shared-prefix forward) is silently not taken."""

    def install(module, name: str) -> list[int]:
        calls: list[int] = []
        real = getattr(module, name)

        def counted(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
        return calls

    return install


class ScriptedLM(LM):
    """An LM whose generation for a prompt is ``answer(text, seed)`` (text: the prompt, or its last chat
    message) and whose log-likelihood of a request is ``score(context, continuation)``; records every
    generate call (``calls``: prompts and settings) and every prompt text (``seen``)."""

    def __init__(self, answer=None, score=None):
        self.answer, self.score, self.calls, self.seen = answer, score, [], []

    def loglikelihood(self, requests):
        return [(self.score(context, continuation), False) for context, continuation in requests]

    def loglikelihood_rolling(self, texts):
        raise NotImplementedError

    def generate(self, prompts, *, stop=None, max_tokens=256, temperature=0.0, top_p=1.0, seed=0):
        texts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        self.calls.append({"prompts": texts, "n": len(texts), "temperature": temperature, "seed": seed})
        self.seen += texts
        return [self.answer(t, seed) for t in texts]
