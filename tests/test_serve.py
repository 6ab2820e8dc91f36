"""`alignlab serve` on 127.0.0.1 (port 0, in a thread), exercised through the OpenAI backend."""

import json
import urllib.error
import urllib.request

import pytest
import torch

from alignlab.errors import EvalError
from alignlab.evaluate.fixtures import build_tiny_lm
from alignlab.evaluate.http_lm import OpenAILM
from alignlab.evaluate.lm import HuggingFaceLM
from alignlab.evaluate.serve import ServeConfig, make_server
from alignlab.evaluate.tasks import get_task

TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "Hello there, friend. How are you?"] * 20


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch.set_num_threads(1)
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny"), TEXTS, vocab_size=300, hidden_size=32, layers=1)
    lm = HuggingFaceLM(path, batch_size=4, device="cpu")
    server = make_server(lm, ServeConfig(model=path, port=0, name="tiny", max_tokens_cap=32))
    yield lm, server.start()
    server.stop()


def _post(url, body):
    req = urllib.request.Request(
        url,
        data=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_loglikelihood_through_the_server_matches_local(served):
    lm, url = served
    requests = [("", "The cat sat on the mat."), ("The cat sat on the ", "hat."), ("A dog", " ran")]
    local = lm.loglikelihood(requests)
    exact = OpenAILM(url, model="tiny", tokenizer=lm.tokenizer).loglikelihood(requests)  # token-id prompts
    text = OpenAILM(url, model="tiny").loglikelihood(requests)  # text prompts, split by text_offset
    for (a, ga), (b, gb), (c, gc) in zip(local, exact, text):
        assert b == pytest.approx(a, abs=1e-4) and c == pytest.approx(a, abs=1e-4)
        assert ga == gb == gc
    rolling = OpenAILM(url, tokenizer=lm.tokenizer).loglikelihood_rolling(["Hello there, friend."])
    assert rolling == pytest.approx(lm.loglikelihood_rolling(["Hello there, friend."]), abs=1e-4)
    # a multiple-choice task runs unchanged over the completions endpoint
    task = get_task("crows_pairs")
    assert task.run(OpenAILM(url, tokenizer=lm.tokenizer), limit=3).metrics == pytest.approx(
        task.run(lm, limit=3).metrics, abs=1e-4
    )


def test_generation_and_chat(served):
    lm, url = served
    assert OpenAILM(url).generate(["The cat"], max_tokens=6) == lm.generate(["The cat"], max_tokens=6)
    chat = [{"role": "user", "content": "Hello there"}]
    assert OpenAILM(url, kind="chat").generate([chat], max_tokens=6) == lm.generate([chat], max_tokens=6)
    with urllib.request.urlopen(url + "/models", timeout=30) as resp:
        assert json.loads(resp.read())["data"][0]["id"] == "tiny"


def test_bad_requests_get_400(served):
    _, url = served
    cases = [
        b"{not json",
        b"[1, 2]",
        {"prompt": []},
        {"prompt": 5},
        {"prompt": "hi", "max_tokens": 10_000},
        {"prompt": "hi", "max_tokens": "5"},
        {"prompt": [10**9]},
        {"prompt": "hi", "n": 3},
        {"prompt": "hi", "logprobs": 99},
    ]
    for body in cases:
        status, reply = _post(url + "/completions", body)
        assert status == 400 and reply["error"]["message"], body
    status, reply = _post(url + "/chat/completions", {"messages": [{"role": "robot", "content": "x"}]})
    assert status == 400 and "messages" in reply["error"]["message"]
    status, reply = _post(url + "/completions", {"prompt": "word " * 600, "max_tokens": 1})
    assert status == 400 and "limit" in reply["error"]["message"]
    assert _post(url + "/nowhere", {})[0] == 404


def test_only_loopback(served):
    lm, _ = served
    with pytest.raises(EvalError, match="loopback"):
        make_server(lm, ServeConfig(model="x", host="0.0.0.0", port=0))


def test_serve_command_reads_its_config_and_refuses_a_public_address_before_loading(monkeypatch):
    import argparse

    from alignlab.cli import parse_args
    from alignlab.evaluate import serve as serve_module
    from alignlab.evaluate.cli import add_commands

    loaded = []
    monkeypatch.setattr(serve_module, "HuggingFaceLM", lambda *a, **kw: loaded.append(a) or pytest.fail("loaded"))
    parser = argparse.ArgumentParser(prog="alignlab")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parse_args(parser, ["serve", "--model", "runs/x", "--host", "0.0.0.0", "--set", "max_tokens_cap=64"])
    with pytest.raises(EvalError, match="loopback"):
        args.handler(args)
    assert loaded == []
    with pytest.warns(DeprecationWarning, match="pass a ServeConfig"), pytest.raises(EvalError, match="loopback"):
        serve_module.serve("runs/x", host="8.8.8.8")
