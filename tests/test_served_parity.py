"""The same model through `alignlab serve` and locally gives the same texts: greedy texts are identical for every
kind of prompt (strings, strings that carry their own BOS, chat messages with system and assistant turns, stop
strings), a sampled request is the local sample at the seed it was sent, and the requests of one sampled call never
share their random numbers (a shared seed makes alike prompts pick alike tokens: n prompts become one sample)."""

import pytest
import torch

from alignlab.evaluate.fixtures import build_tiny_lm
from alignlab.evaluate.http_lm import OpenAILM, request_seeds
from alignlab.evaluate.lm import HuggingFaceLM
from alignlab.evaluate.serve import ServeConfig, make_server

TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "Hello there, friend. How are you?",
         "I do not know that.", "The capital of Zorbia is Vell."] * 20
CHATS = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "system", "content": "You are a careful assistant."}, {"role": "user", "content": "The cat"}],
    [{"role": "user", "content": "A dog"}, {"role": "assistant", "content": "ran in the park."},
     {"role": "user", "content": "And the cat?"}],
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch.set_num_threads(1)
    # add_bos: the tokenizer writes BOS itself, as hub models' do (the toy world's does not)
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny"), TEXTS, vocab_size=300, hidden_size=32, layers=1)
    lm = HuggingFaceLM(path, batch_size=4, device="cpu")
    server = make_server(lm, ServeConfig(model=path, port=0, max_tokens_cap=32))
    yield lm, OpenAILM(server.start())
    server.stop()


def test_greedy_texts_are_the_local_ones_for_every_kind_of_prompt(served) -> None:
    lm, client = served
    bos = lm.tokenizer.bos_token
    strings = ["The cat", "Hello there, friend.", bos + "A dog ran", bos + "The capital of"]
    for stop in (None, ["."], [" the", "\n"]):
        for prompts in (strings, CHATS, [*CHATS, *strings]):  # the last: both endpoints in one call
            local = lm.generate(prompts, max_tokens=12, stop=stop)
            assert client.generate(prompts, max_tokens=12, stop=stop) == local, (stop, prompts)


def test_a_string_that_carries_its_bos_is_not_given_a_second_one(served) -> None:
    lm, client = served
    bos = lm.tokenizer.bos_token
    body = client.request("/completions", {"prompt": bos + "A dog ran", "max_tokens": 1, "logprobs": 0, "echo": True})
    assert body["usage"]["prompt_tokens"] == len(lm.encode_prompt(bos + "A dog ran"))
    assert body["choices"][0]["logprobs"]["tokens"][:2] != [bos, bos]


def test_a_sampled_request_is_the_local_sample_at_the_seed_it_was_sent(served) -> None:
    lm, client = served
    prompts = ["The cat", CHATS[1], "The cat"]  # the repeat is a second, different sample
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.8)):
        texts = client.generate(prompts, max_tokens=12, temperature=temperature, top_p=top_p, seed=3)
        seeds = request_seeds(prompts, 3, temperature)
        assert texts == [lm.generate([p], max_tokens=12, temperature=temperature, top_p=top_p, seed=s)[0]
                         for p, s in zip(prompts, seeds)]
        assert client.generate(prompts, max_tokens=12, temperature=temperature, top_p=top_p, seed=3) == texts


def test_the_requests_of_a_sampled_call_never_share_a_seed() -> None:
    chats = [[{"role": "user", "content": f"Who is {name}?"}] for name in ("Zorb", "Vell", "Quoun")]
    prompts = chats * 3 + ["a", "a", "b"]
    seeds = request_seeds(prompts, 0, 1.0)
    assert len(set(seeds)) == len(prompts) and all(0 <= s < 2**31 for s in seeds)
    assert seeds == request_seeds(prompts, 0, 1.0)  # a rerun sends the same seeds (and hits the cache)
    assert seeds[:3] == request_seeds(chats, 0, 1.0)  # a prompt's k-th sample does not depend on the others
    assert set(seeds).isdisjoint(request_seeds(prompts, 1, 1.0))  # another seed, other samples
    assert request_seeds(prompts, 4, 0.0) == [4] * len(prompts)  # greedy: the seed changes nothing


def test_a_sampled_request_without_a_seed_gets_fresh_random_numbers(served) -> None:
    _, client = served
    body = {"prompt": "The cat", "max_tokens": 12, "temperature": 1.0}
    texts = {client.request("/completions", body)["choices"][0]["text"] for _ in range(3)}
    assert len(texts) == 3  # a default seed of 0 answered all three alike (one sample, not three)
    seeded = {client.request("/completions", {**body, "seed": 7})["choices"][0]["text"] for _ in range(2)}
    assert len(seeded) == 1
