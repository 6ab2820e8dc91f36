"""The vLLM wiring against a fake engine with vLLM's interface (vLLM is not installed here and there is no
GPU): prompts and sampling settings reach the engine, its outputs come back as ids with finished flags, the
online trainer syncs the policy's weights into it after every update, and a hung engine hits the timeout."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest
import torch
from conftest import write_jsonl

from alignlab.config import load_config
from alignlab.core.generation import GenerationConfig, VLLMEngine, generate
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.errors import ModelError


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class FakeLLM:
    """``vllm.LLM``: records what it is given; answers each prompt with scripted completions.

    Prompt row i gets ``script[i % len(script)]``: (token ids, finish_reason, stop_reason).
    """

    instances: list[FakeLLM] = []
    script: list[tuple[list[int], str, object]] = []
    hang: threading.Event | None = None

    def __init__(self, **kwargs):
        self.kwargs, self.calls, self.loaded, self.prefix_resets = kwargs, [], [], 0
        runner_model = types.SimpleNamespace(load_weights=self._load_weights)
        self.llm_engine = types.SimpleNamespace(model_executor=types.SimpleNamespace(
            driver_worker=types.SimpleNamespace(model_runner=types.SimpleNamespace(model=runner_model))))
        FakeLLM.instances.append(self)

    def _load_weights(self, weights):
        self.loaded.append({name: t.clone() for name, t in weights})

    def reset_prefix_cache(self):
        self.prefix_resets += 1

    def generate(self, prompts, params, use_tqdm=True):
        if FakeLLM.hang is not None:
            FakeLLM.hang.wait(10)
        self.calls.append((prompts, params))
        outs = []
        for i, _ in enumerate(prompts):
            ids, finish, stop = FakeLLM.script[i % len(FakeLLM.script)]
            sample = types.SimpleNamespace(token_ids=tuple(ids[:params.max_tokens]), finish_reason=finish,
                                           stop_reason=stop)
            outs.append(types.SimpleNamespace(outputs=[sample]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(FakeLLM, "instances", [])
    monkeypatch.setattr(FakeLLM, "hang", None)
    return FakeLLM


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


def test_prompts_and_sampling_settings_reach_the_engine_and_ids_come_back_with_finished_flags(
        fake_vllm, lm, tiny_model_dir, monkeypatch):
    model, tok = lm
    eos = tok.eos_token_id
    monkeypatch.setattr(FakeLLM, "script", [([11, 12, eos], "stop", None),  # ended with EOS, kept
                                            ([13, 14, 15, 16], "length", None),  # cut at max_tokens
                                            ([17], "stop", eos)])  # vLLM left the stop token out
    cfg = GenerationConfig(backend="vllm", max_new_tokens=4, temperature=0.7, top_p=0.9, top_k=0, seed=5,
                           stop=["\n\n"], vllm_gpu_memory_utilization=0.4)
    engine = VLLMEngine(str(tiny_model_dir), cfg)
    [llm] = fake_vllm.instances
    assert llm.kwargs["model"] == str(tiny_model_dir) and llm.kwargs["gpu_memory_utilization"] == 0.4
    prompts = [[{"role": "user", "content": q}] for q in ("Hi", "Reverse cat.", "Two plus two?")]
    out = generate(model, tok, prompts, cfg, engine=engine)
    [(sent, params)] = llm.calls
    assert sent == [{"prompt_token_ids": p} for p in out.prompt_ids]
    assert (params.temperature, params.top_p, params.top_k, params.max_tokens, params.seed, params.stop) == (
        0.7, 0.9, -1, 4, 5, ["\n\n"])
    assert eos in params.stop_token_ids
    assert out.completion_ids == [[11, 12, eos], [13, 14, 15, 16], [17, eos]]
    assert out.finished == [True, False, True]
    assert out.texts == tok.batch_decode(out.completion_ids, skip_special_tokens=True)


def test_online_trainer_samples_through_the_engine_and_syncs_weights_after_every_update(
        fake_vllm, tiny_model_dir, tmp_path, monkeypatch):
    from alignlab.outer.online.grpo import GRPOConfig, train_grpo

    tok = load_tokenizer(str(tiny_model_dir))
    monkeypatch.setattr(FakeLLM, "script", [([20, 21, tok.eos_token_id], "stop", None), ([22, 23, 24], "length", None)])
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": [{"role": "user", "content": q}]} for q in ("Hi", "Thanks!", "Hello!", "Why?")])
    cfg = load_config(GRPOConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={prompts}",
                                         f"output={tmp_path / 'run'}", "train.max_steps=2", "train.progress=false",
                                         "generation.backend=vllm", "generation.max_new_tokens=3", "group_size=2",
                                         "prompts_per_step=2", "minibatch_size=4", "train.lr=1e-2"])
    seen: list[str] = []

    def reward(prompts, completions):
        seen.extend(completions)
        return [3.0 * len(c) for c in completions]

    result = train_grpo(cfg, reward=reward)
    [llm] = fake_vllm.instances
    assert len(llm.calls) == 2 and all(len(sent) == 4 for sent, _ in llm.calls)  # 2 steps of 2 prompts × 2
    assert seen[:2] == tok.batch_decode([[20, 21, tok.eos_token_id], [22, 23, 24]], skip_special_tokens=True)
    # Loaded at the start and after each of the 2 updates; each load holds the policy's weights of the moment.
    assert len(llm.loaded) == 3 and llm.prefix_resets == 3
    first, last = llm.loaded[0], llm.loaded[-1]
    start = load_causal_lm(str(tiny_model_dir)).state_dict()
    final = load_causal_lm(str(result.output_dir)).state_dict()
    for name, tensor in start.items():
        torch.testing.assert_close(first[name], tensor, rtol=0, atol=0)
        torch.testing.assert_close(last[name], final[name], rtol=0, atol=0)
    assert any(not torch.equal(first[n], last[n]) for n in start)  # the updates did change what was synced


def test_a_hung_engine_hits_the_timeout(fake_vllm, lm, tiny_model_dir, monkeypatch):
    model, tok = lm
    monkeypatch.setattr(FakeLLM, "script", [([11], "length", None)])
    cfg = GenerationConfig(backend="vllm", max_new_tokens=1, timeout_s=0.2)
    engine = VLLMEngine(str(tiny_model_dir), cfg)
    release = threading.Event()
    monkeypatch.setattr(FakeLLM, "hang", release)
    start = time.perf_counter()
    try:
        with pytest.raises(ModelError, match="did not answer within 0.2 s"):
            generate(model, tok, [[5, 6, 7]], cfg, engine=engine)
        assert time.perf_counter() - start < 2
    finally:
        release.set()  # let the hung call's thread end


def test_evaluation_lm_generates_through_the_engine(fake_vllm, tiny_model_dir, monkeypatch):
    from alignlab.evaluate.lm import HuggingFaceLM

    tok = load_tokenizer(str(tiny_model_dir))
    monkeypatch.setattr(FakeLLM, "script", [([30, 31, tok.eos_token_id], "stop", None)])
    lm = HuggingFaceLM(str(tiny_model_dir), generation_backend="vllm", device="cpu")
    texts = lm.generate(["The cat", "A dog ran"], max_tokens=5, stop=["\n"], seed=2)
    [llm] = fake_vllm.instances
    [(sent, params)] = llm.calls
    assert [p["prompt_token_ids"] for p in sent] == [lm.encode_prompt("A dog ran"), lm.encode_prompt("The cat")]
    assert (params.max_tokens, params.temperature, params.stop, params.seed) == (5, 0.0, ["\n"], 2)
    assert texts == [tok.decode([30, 31], skip_special_tokens=True)] * 2
    assert lm.generate_ids([lm.encode_prompt("The cat")], max_tokens=5) == [[30, 31]]  # EOS stripped here


def test_without_vllm_the_backend_says_how_to_get_it(monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(ModelError, match="pip install vllm"):
        VLLMEngine(str(tiny_model_dir), GenerationConfig(backend="vllm"))
