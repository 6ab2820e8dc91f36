"""alignlab's CrowS-Pairs against lm-evaluation-harness 0.4.13 (``HFLM`` + its crows_pairs metrics).

Both run the same tiny random Llama (float64, so the comparison tests the algorithm, not rounding)
on the same 30 CrowS-Pairs rows; log-likelihoods, likelihood_diff and pct_stereotype (overall and per
bias type) must agree to 1e-5.
"""

import csv

import pytest
import torch

pytest.importorskip("lm_eval")
from conftest import SHARED_DATA
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks.crows_pairs.utils import process_results  # noqa: E402

from alignlab.evaluate.fixtures import build_tiny_lm  # noqa: E402
from alignlab.evaluate.lm import HuggingFaceLM  # noqa: E402
from alignlab.evaluate.tasks import get_task  # noqa: E402

CSV = str(SHARED_DATA / "crows_pairs_anonymized.csv")
N_ROWS = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    with open(CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = [r[k] for r in rows[:300] for k in ("sent_more", "sent_less")]
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny"), texts, vocab_size=400, hidden_size=32, layers=1)
    harness = HFLM(pretrained=path, device="cpu", dtype="float64", batch_size=4)
    ours = HuggingFaceLM(path, batch_size=4, device="cpu")
    ours.model.double()
    return rows[:N_ROWS], harness, ours


def _harness_ll(harness, requests, **kwargs):
    inst = [
        Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)
    ]
    return harness.loglikelihood(inst, disable_tqdm=True, **kwargs)


def test_crows_pairs_matches_lm_eval(setup):
    rows, harness, ours = setup
    # The harness's crows_pairs: empty context, the two sentences as choices, no target delimiter.
    requests = [("", r[k]) for r in rows for k in ("sent_more", "sent_less")]
    ref = _harness_ll(harness, requests)
    got = ours.loglikelihood(requests)
    assert [g for _, g in got] == [g for _, g in ref]
    for (a, _), (b, _) in zip(got, ref):
        assert a == pytest.approx(b, abs=1e-5)

    ref_docs = [process_results(r, ref[2 * i : 2 * i + 2]) for i, r in enumerate(rows)]
    out = get_task("crows_pairs").run(ours, limit=N_ROWS)
    for metric in ("likelihood_diff", "pct_stereotype"):
        want = sum(d[metric] for d in ref_docs) / len(ref_docs)
        assert out.metrics[metric] == pytest.approx(want, abs=1e-5)
        for bias in {r["bias_type"] for r in rows}:  # the harness's per-bias subtasks filter on bias_type
            docs = [d for d, r in zip(ref_docs, rows) if r["bias_type"].startswith(bias)]
            assert out.groups[bias][metric] == pytest.approx(
                sum(d[metric] for d in docs) / len(docs), abs=1e-5
            )
    assert out.n == N_ROWS


def test_context_encoding_matches_lm_eval(setup):
    # Non-empty contexts: trailing spaces move to the continuation, the continuation is what the full
    # text adds to the context; choices share the context, so alignlab runs them as one tree row.
    rows, harness, ours = setup
    requests = [
        (f"Q: {r['bias_type']}? A: ", choice) for r in rows[:8] for choice in ("yes", "no", "maybe so")
    ]
    requests += [("The man said", " hello there"), ("The man said", " hello")]
    for (a, ga), (b, gb) in zip(ours.loglikelihood(requests), _harness_ll(harness, requests)):
        assert a == pytest.approx(b, abs=1e-5) and ga == gb


def test_rolling_loglikelihood_matches_lm_eval(setup):
    rows, harness, ours = setup
    texts = [r["sent_more"] + " " + r["sent_less"] for r in rows[:4]]
    inst = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
        for i, t in enumerate(texts)
    ]
    for window in (2048, 16):  # 16 forces several windows per text
        harness._max_length, ours.max_length = window, window
        ref = harness.loglikelihood_rolling(inst, disable_tqdm=True)
        assert ours.loglikelihood_rolling(texts) == pytest.approx(ref, abs=1e-5)
    harness._max_length, ours.max_length = None, 512
