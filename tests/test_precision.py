"""train.mixed_precision=auto: bf16 only where the hardware computes it natively, decided from its capability
(mocked both ways here, since the machine running the suite may have either)."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import build_tokenizer, sft_rows

import alignlab.core.precision as precision
from alignlab.core.models import tiny_llama
from alignlab.core.records import user
from alignlab.core.tokenize import CompletionCollator, encode_completion
from alignlab.core.trainer import TrainConfig, autocast, train
from alignlab.outer.sft import SFTObjective


@pytest.fixture(autouse=True)
def fresh_choice():
    """The choice is cached per process: forget it before and after, so no mock leaks into other tests."""
    precision._fastest_on.cache_clear()
    yield
    precision._fastest_on.cache_clear()


def mock_cpu(monkeypatch, *, avx512_bf16: bool, amx: bool, capability: str = "AVX2") -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"),
                         [(False, False, "no"), (True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16")])
def test_auto_picks_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, avx512_bf16, amx, expected):
    mock_cpu(monkeypatch, avx512_bf16=avx512_bf16, amx=amx, capability="AVX512")
    choice = precision.fastest_precision()
    assert choice.mixed_precision == expected
    assert "AVX512" in choice.reason  # names the capability, so a log line explains itself


@pytest.mark.parametrize(("flags", "expected"), [("fpu sse avx2 avx512f", "no"), ("fpu avx2 avx512_bf16", "bf16"),
                                                 ("fpu avx2 amx_bf16 amx_tile", "bf16")])
def test_without_torchs_probes_the_cpuinfo_flags_decide(monkeypatch, tmp_path, flags, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    assert precision.fastest_precision().mixed_precision == expected
    assert precision.cpu_info().model == "Test CPU"


@pytest.mark.parametrize(("bf16_supported", "expected"), [(True, "bf16"), (False, "no")])
def test_auto_on_cuda_follows_the_gpus_bf16_support(monkeypatch, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Test GPU")
    choice = precision.fastest_precision()
    assert choice.mixed_precision == expected and "Test GPU" in choice.reason


def test_the_choice_is_logged_once(monkeypatch, caplog):
    mock_cpu(monkeypatch, avx512_bf16=False, amx=False)
    with caplog.at_level(logging.INFO, logger="alignlab"):
        for _ in range(3):
            precision.fastest_precision("cpu")
        precision.fastest_precision()
    lines = [r.getMessage() for r in caplog.records if "mixed_precision=auto" in r.getMessage()]
    assert lines == ["train.mixed_precision=auto on cpu: no (the CPU (AVX2) has no AVX512-BF16/AMX: bf16 would be "
                     "emulated, slower)"]


class RecordingObjective(SFTObjective):
    """SFT that records, at each forward, whether bf16 autocast is on and the dtype the logits come out in."""

    def __init__(self):
        self.seen: list[tuple[bool, torch.dtype]] = []

    def __call__(self, model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        self.seen.append((torch.is_autocast_enabled("cpu"), logits.dtype))
        return super().__call__(model, batch)


@pytest.mark.parametrize(("native", "expected"), [(False, (False, torch.float32)), (True, (True, torch.bfloat16))])
def test_auto_trains_in_fp32_on_a_cpu_without_native_bf16(monkeypatch, tmp_path, native, expected):
    mock_cpu(monkeypatch, avx512_bf16=native, amx=False)
    tok = build_tokenizer(tmp_path / "tok")
    examples = [encode_completion(tok, [user(r["messages"][0]["content"])], r["messages"][1]["content"])
                for r in sft_rows(4)]
    model = tiny_llama(len(tok), hidden_size=32, layers=1, heads=2, seed=0, pad_token_id=tok.pad_token_id)
    objective = RecordingObjective()
    cfg = TrainConfig(max_steps=2, batch_size=2, progress=False, mixed_precision="auto")
    train(model, objective, examples, CompletionCollator(tok.pad_token_id), cfg, tmp_path / "run")
    assert objective.seen == [expected, expected]
    # the same precision for work outside the loop (e.g. precomputed references)
    assert isinstance(autocast("auto"), torch.autocast) == native
