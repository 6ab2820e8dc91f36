"""Every CLI command that takes a model or judge works against `alignlab serve` by URL, chat or completions,
and its HTTP timeout, retries and concurrency are config options."""

import json
import socket
import time

import pytest
import torch

from alignlab.cli import main
from alignlab.errors import EvalError
from alignlab.evaluate.fixtures import build_tiny_lm
from alignlab.evaluate.http_lm import HTTPOptions, open_url
from alignlab.evaluate.lm import HuggingFaceLM
from alignlab.evaluate.serve import ServeConfig, make_server

TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "Hello there, friend. How are you?"] * 20


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch.set_num_threads(1)
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny"), TEXTS, vocab_size=300, hidden_size=32, layers=1,
                          max_positions=2048)  # the judge asks for 512 new tokens
    lm = HuggingFaceLM(path, batch_size=8, device="cpu")
    server = make_server(lm, ServeConfig(model=path, port=0, name="tiny", max_tokens_cap=512))
    yield path, server.start()
    server.stop()


@pytest.fixture
def questions(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"question_id": i, "category": "writing", "turns": [t, "Again?"]}) + "\n"
                            for i, t in enumerate(["Hello there", "The cat sat"])))
    return str(path)


@pytest.mark.parametrize("scheme", ["http", "http+chat"])
def test_judge_with_url_judge_and_url_model(served, questions, tmp_path, scheme):
    path, url = served
    remote = url.replace("http", scheme, 1)
    out = tmp_path / "judged"
    code = main(["judge", "--judge", remote + "#tiny", "--models", f"served={remote},local={path}",
                 "--questions", questions, "--output", str(out), "--max-tokens", "4"])
    assert code == 0
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    by_model = {(a["model"], a["question_id"]): a["turns"] for a in answers}
    assert by_model[("served", 0)] == by_model[("local", 0)]  # same greedy answers through the server
    assert set(json.loads((out / "results.json").read_text())["single"]) == {"served", "local"}


def test_world_task_and_a_loglikelihood_task_through_the_server(served, tmp_path):
    path, url = served
    assert main(["eval", "--model", url, "--tasks", "world", "--limit", "2", "--output", str(tmp_path / "w")]) == 0
    assert json.loads((tmp_path / "w" / "results.json").read_text())["tasks"]["world"]["n"] >= 2  # samples per prompt
    assert main(["eval", "--model", url, "--tasks", "crows_pairs", "--limit", "2",
                 "--output", str(tmp_path / "c")]) == 0
    chat_only = main(["eval", "--model", url.replace("http", "http+chat", 1), "--tasks", "crows_pairs",
                      "--limit", "2", "--output", str(tmp_path / "x")])
    assert chat_only == 2  # a chat endpoint cannot score text: a one-line error


def test_completions_only_url_refuses_chat_prompts_clearly(served):
    _, url = served
    lm = open_url(url.replace("http", "http+completions", 1))
    assert lm.generate(["The cat"], max_tokens=3)  # strings work
    with pytest.raises(EvalError, match="takes string prompts"):
        lm.generate([[{"role": "user", "content": "Hi"}]], max_tokens=3)


def test_a_server_that_never_answers_costs_what_the_options_say(questions, tmp_path, capsys):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        start = time.perf_counter()
        code = main(["judge", "--judge", url, "--models", f"a={url}", "--questions", questions,
                     "--output", str(tmp_path / "j"), "--set", "http.timeout_s=0.3", "--set", "http.max_retries=1"])
        elapsed = time.perf_counter() - start
    assert code == 2 and elapsed < 5
    assert "failed after 2 attempts" in capsys.readouterr().err


def test_http_options_are_checked_and_the_api_key_comes_from_the_environment(monkeypatch):
    with pytest.raises(ValueError, match="timeout_s"):
        HTTPOptions(timeout_s=0)
    monkeypatch.setenv("MY_KEY", "k")
    lm = open_url("https+chat://example.org/v1#m", HTTPOptions(api_key_env="MY_KEY", max_concurrency=9))
    assert (lm.kind, lm.model, lm.api_key, lm.max_concurrency, lm.base_url) == ("chat", "m", "k", 9,
                                                                                "https://example.org/v1")
    with pytest.raises(EvalError, match="not a server URL"):
        open_url("http+embeddings://x/v1")
