"""``POST /v1/alignlab/weights`` (alignlab serve with allow_weight_reload=true): a reload answered 504 never happens
later; a directory that is not the served model's (names/shapes from the headers, config.json, tokenizer files) or a
file that cannot be read is a 400 that changes nothing, and a refusal by name or shape reads no tensor."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request

import pytest
import safetensors.torch
import torch
from conftest import build_model

from alignlab.core.models import load_tokenizer
from alignlab.evaluate import serve
from alignlab.evaluate.lm import HuggingFaceLM
from alignlab.evaluate.serve import ServeConfig, make_server

KEY = "k"


def post(url: str, route: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + route, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def greedy(url: str) -> list[str]:
    """What the server answers greedily; the request queues behind any reload job on the one model thread."""
    return [post(url, "/completions", {"prompt": p, "max_tokens": 6, "temperature": 0})[1]["choices"][0]["text"]
            for p in ("What is 3 plus 4?", "Hello!")]


@pytest.fixture(scope="module")
def other_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model's architecture and tokenizer with other weights (seed 1): a push that loads."""
    path = tmp_path_factory.mktemp("other")
    build_model(path, load_tokenizer(str(tiny_model_dir)), seed=1)
    return path


@pytest.fixture
def reload_server(tiny_model_dir):
    torch.set_num_threads(1)
    running = []

    def start(**settings):
        lm = HuggingFaceLM(str(tiny_model_dir), device="cpu")
        srv = make_server(lm, ServeConfig(model=str(tiny_model_dir), port=0, allow_weight_reload=True, api_key=KEY,
                                          **settings))
        running.append(srv)
        return srv.start()

    yield start
    for srv in running:
        srv.stop()


def test_a_reload_answered_504_never_happens_later(reload_server, other_dir, monkeypatch) -> None:
    url = reload_server(request_timeout_s=0.2)
    before = greedy(url)
    release, real_read = threading.Event(), serve.read_weights

    def slow_read(*args, **kwargs):  # the read outlasts the request's wait, then succeeds
        release.wait(30)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(serve, "read_weights", slow_read)
    status, body = post(url, "/alignlab/weights", {"path": str(other_dir)})
    assert status == 504 and body["error"]["type"] == "timeout"
    release.set()  # the job now reads the weights, then must find itself abandoned
    assert greedy(url) == before  # queued behind the job: it has finished, and the weights never changed
    monkeypatch.setattr(serve, "read_weights", real_read)
    assert post(url, "/alignlab/weights", {"path": str(other_dir)})[0] == 200  # the same push, in time, loads
    assert greedy(url) != before


def test_a_reload_whose_copy_began_before_the_timeout_is_waited_for_and_answered(reload_server, other_dir,
                                                                                  monkeypatch) -> None:
    url = reload_server(request_timeout_s=0.2)
    before = greedy(url)
    route_checked, real_read, real_job = threading.Event(), serve.read_weights, serve._ReloadJob

    class SignallingLock:  # the second holder is the route, deciding after its timeout
        def __init__(self):
            self.lock, self.holders = threading.Lock(), 0

        def __enter__(self):
            self.lock.acquire()
            self.holders += 1

        def __exit__(self, *exc):
            self.lock.release()
            if self.holders == 2:
                route_checked.set()

    class PausingCopy(dict):  # the copy stops after its first tensor until the route has timed out
        def items(self):
            for i, item in enumerate(super().items()):
                if i == 1:
                    route_checked.wait(30)
                yield item

    monkeypatch.setattr(serve, "_ReloadJob", lambda: real_job(lock=SignallingLock()))
    monkeypatch.setattr(serve, "read_weights", lambda *a, **k: PausingCopy(real_read(*a, **k)))
    status, body = post(url, "/alignlab/weights", {"path": str(other_dir)})
    assert route_checked.is_set() and status == 200 and body["tensors"] > 1  # not a 504 for a load that happened
    assert greedy(url) != before


def _copy(src, dst, *, config=None, files=None):
    shutil.copytree(src, dst)
    if config:
        data = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps(data | config))
    for name, text in (files or {}).items():
        (dst / name).write_bytes(text)
    return dst


def test_refusals_change_nothing_and_name_checks_read_no_tensor(reload_server, tiny_model_dir, other_dir, tmp_path,
                                                                monkeypatch) -> None:
    url = reload_server()
    before = greedy(url)
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    safetensors.torch.save_file({"encoder.huge": torch.zeros(4, 4)}, str(unrelated / "model.safetensors"))
    tokenizer = json.loads((other_dir / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"] = {f"x{k}": v for k, v in tokenizer["model"]["vocab"].items()}
    cases = {
        "unrelated": (unrelated, "not the served model's: unknown tensor 'encoder.huge'"),
        "corrupt": (_copy(other_dir, tmp_path / "corrupt", files={"model.safetensors": b"\x08not safetensors"}),
                    "cannot read the weights in"),
        "rope": (_copy(other_dir, tmp_path / "rope", config={"rope_parameters": {"rope_theta": 1.0, "rope_type": "default"}}),
                 "config.json has rope_parameters={'rope_theta': 1.0"),
        "eps": (_copy(other_dir, tmp_path / "eps", config={"rms_norm_eps": 0.1}), "config.json has rms_norm_eps=0.1"),
        "tokenizer": (_copy(other_dir, tmp_path / "tok", files={"tokenizer.json": json.dumps(tokenizer).encode()}),
                      "its tokenizer.json differs from the served model's"),
        "bad config": (_copy(other_dir, tmp_path / "badcfg", files={"config.json": b"{not json"}), "cannot read"),
    }
    read, real_load = [], safetensors.torch.load_file
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: read.append(a) or real_load(*a, **k))
    for name, (path, message) in cases.items():
        status, body = post(url, "/alignlab/weights", {"path": str(path)})
        assert status == 400 and message in body["error"]["message"], (name, body)
    assert read == []  # every refusal came from headers, config and tokenizer, before any tensor was read
    assert greedy(url) == before  # and nothing changed
    # what only names or documents a model does not refuse it
    renamed = _copy(other_dir, tmp_path / "renamed", config={"_name_or_path": "elsewhere", "torch_dtype": "bfloat16",
                                                             "transformers_version": "0.0.1"})
    monkeypatch.setattr(safetensors.torch, "load_file", real_load)
    assert post(url, "/alignlab/weights", {"path": str(renamed)})[0] == 200
    assert greedy(url) != before
