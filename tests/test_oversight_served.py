"""Fine-tuning oversight methods through a server: the protocol samples from the model it is given (a server URL)
while fine-tuning trains a local copy (``world_run.Models``); later iterations sample from the trained copy; the
results say where each stage's samples came from; a combination that cannot work is one clear error; a server that
fails mid-run loses no finished stage. Scripted LMs pin who is asked and what is trained; a real in-process
``alignlab serve`` on a tiny model runs each shared path end to end."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from test_oversight_decomposition import fake_ida_tools
from test_oversight_selfreward import RIGHT, Q, ScriptedLM, _fake_train, judge_script

from alignlab.cli import main
from alignlab.evaluate.http_lm import request_seeds
from alignlab.evaluate.lm import HuggingFaceLM
from alignlab.evaluate.serve import ServeConfig, make_server
from alignlab.oversight import decomposition as C
from alignlab.oversight.self_rewarding import SelfRewardSettings, run_self_rewarding
from alignlab.oversight.world_run import Models

URL = "http://127.0.0.1:9/v1"  # never contacted: the scripted tests' loaders answer it


# ---- scripted: sampling goes to the given LM, training to the local copy ------------------------------


def test_self_rewarding_samples_iteration_one_from_the_server_and_trains_the_local_copy(tmp_path) -> None:
    loads: list[str] = []

    def load(path):
        loads.append(str(path))
        return ScriptedLM(judge_script())

    log: list = []
    models = Models(URL, "local")
    entries = run_self_rewarding(models, [[Q], [Q]], [Q], tmp_path, SelfRewardSettings(iterations=2, n_candidates=2),
                                 load=load, train=_fake_train(log), truth=lambda lm: {"true_reward": 1.0},
                                 progress=lambda s: None)
    m1, m2 = str(tmp_path / "iter1" / "model"), str(tmp_path / "iter2" / "model")
    # M0 judges through the server and is scored on its local weights; M1's data comes from the server; M2's from M1
    assert loads == [URL, "local", URL, m1, m1, m2]
    assert [(init, out) for _, init, out, _ in log] == [("local", m1), (m1, m2)]
    assert log[0][3][0]["chosen"][0]["content"] == RIGHT  # the server's judgement is what is trained on
    assert [(e.get("data_from"), e["judged_by"], e["model"]) for e in entries] == [
        (None, URL, "local"), (URL, m1, m1), (m1, m2, m2)]
    sources = models.summary()
    assert sources["server"] and sources["model"] == URL and sources["train_from"] == "local"
    for t in (1, 2):  # an iteration written before sources were recorded still resumes
        done = tmp_path / f"iter{t}" / "iteration.json"
        old = json.loads(done.read_text())
        done.write_text(json.dumps({k: v for k, v in old.items() if k not in ("data_from", "trained_from",
                                                                               "judged_by")}))
    again = Models(URL, "local")
    run_self_rewarding(again, [[Q], [Q]], [Q], tmp_path, SelfRewardSettings(iterations=2, n_candidates=2),
                       load=load, train=_fake_train(log), truth=lambda lm: {"true_reward": 1.0},
                       progress=lambda s: None)
    assert len(log) == 2 and again.summary()["stages"][3] == {"stage": "iter2", "samples_from": m1,
                                                              "trained_from": m1, "trained": m2}
    assert [s["stage"] for s in sources["stages"]] == ["iter0-judge", "iter1", "iter1-judge", "iter2", "iter2-judge"]
    assert sources["stages"][1] == {"stage": "iter1", "samples_from": URL, "trained_from": "local", "trained": m1}


def test_ida_amplifies_with_the_server_first_and_distils_the_local_copy(tmp_path) -> None:
    load, finetune, _ = fake_ida_tools()
    loads, inits = [], []

    def recording_load(path):
        loads.append(str(path))
        return load(path)

    def recording_finetune(kind, rows, init, output, **kwargs):
        inits.append(str(init))
        return finetune(kind, rows, init, output, **kwargs)

    models = Models(URL, "local")
    records = C.ida(models, tmp_path, world_seed=0, min_ops=[4, 7], max_ops=[6, 9], parts=3, train_problems=4,
                    eval_problems=3, load=recording_load, finetune=recording_finetune)
    m1, m2 = str(tmp_path / "iter1"), str(tmp_path / "iter2")
    assert loads == [URL, m1, m1, m2]  # amplify with the server, measure M1; amplify with M1, measure M2
    assert inits == ["local", m1]
    assert [(r["samples_from"], r["trained_from"]) for r in records] == [(URL, "local"), (m1, m1)]
    assert [s["stage"] for s in models.summary()["stages"]] == ["iter1", "iter2"]


# ---- the command refuses what cannot work ----------------------------------------------------------


@pytest.mark.parametrize("command", ["self-rewarding", "constitutional", "ida", "debate"])
def test_train_from_must_be_local_weights(tiny_model_dir, tmp_path, capsys, command) -> None:
    base = ["oversee", command, "--model", URL, "--world", "--output", str(tmp_path / "o")]
    assert main([*base, "--set", f"train_from={URL}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"alignlab: error: train_from must be a local model directory (fine-tuning trains local weights; "
                   f"a server's cannot be changed), got '{URL}'"]
    assert main([*base, "--set", f"train_from={tmp_path / 'missing'}"]) == 2
    assert "is not a local model directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_sampling_only_commands_offer_no_train_from(capsys) -> None:
    assert main(["oversee", "sandwiching", "--world", "--set", "train_from=x"]) == 2
    assert "unknown config key 'train_from'" in capsys.readouterr().err


def test_repeated_prompts_in_one_sampled_call_get_their_own_seeds() -> None:
    seeds = request_seeds([[{"role": "user", "content": "q"}]] * 4 + ["p"], 3, 1.0)
    assert len(set(seeds)) == 5  # repeats and different prompts alike: each request its own (test_served_parity)
    assert request_seeds(["p", "p"], 3, 0.0) == [3, 3]  # greedy: the seed does not matter, the cache key stays


# ---- end to end through a real `alignlab serve` ----------------------------------------------------


@pytest.fixture
def server(tiny_model_dir):
    torch.set_num_threads(1)
    running = []

    def start():
        lm = HuggingFaceLM(str(tiny_model_dir), batch_size=8, device="cpu")
        srv = make_server(lm, ServeConfig(model=str(tiny_model_dir), port=0, max_tokens_cap=64))
        running.append(srv)
        return srv, srv.start()

    yield start
    for srv in running:
        srv.stop()


TINY = ["--set", "steps=1", "--set", "eval_limit=7", "--set", "eval_samples=1", "--set", "max_tokens=4"]


def test_constitutional_through_a_server_samples_there_and_trains_local_weights(tiny_model_dir, tmp_path, server,
                                                                                monkeypatch) -> None:
    from alignlab.oversight import constitutional

    srv, url = server()
    # the tiny model's verdicts never parse: read each pair's two verdicts as "A" then "B" (both name the first
    # sample), so the RL stage has rows to train on
    verdicts = itertools.cycle("AB")
    monkeypatch.setattr(constitutional.P, "parse_verdict", lambda text: next(verdicts))
    out = tmp_path / "cai"
    assert main(["oversee", "constitutional", "--model", url, "--world", "--output", str(out), "--set", "prompts=4",
                 "--set", "n_revisions=1", "--set", f"train_from={tiny_model_dir}", *TINY]) == 0
    assert sum(srv.app.state.logic.batcher.batches) > 0  # the server answered the protocol's requests
    result = json.loads((out / "results.json").read_text())["results"]
    sources = {s["stage"]: s for s in result["sources"]["stages"]}
    assert result["sources"]["model"] == url and result["sources"]["server"] is True
    assert sources["sl-data"]["samples_from"] == url
    assert sources["rl-data"]["samples_from"] == {"policy": str(out / "sl-cai" / "model"), "feedback": url}
    assert sources["sl-cai"]["trained_from"] == str(tiny_model_dir)
    assert sources["rlaif"]["trained_from"] == str(out / "sl-cai" / "model")
    traces = [json.loads(line) for line in (out / "sl-data" / "traces.jsonl").read_text().splitlines()]
    data = [json.loads(line) for line in (out / "sl-cai" / "model-data.jsonl").read_text().splitlines()]
    assert [d["messages"][-1]["content"] for d in data] == [t["final"] for t in traces]  # the server's revisions
    assert [r["method"] for r in result["rows"]] == ["base", "sft-human", "sl-cai", "dpo-human", "rlaif"]
    assert all("parse_rate" in r for r in result["rows"])


def test_self_rewarding_through_a_server_resumes_after_the_server_fails(tiny_model_dir, tmp_path, server,
                                                                         monkeypatch, capsys) -> None:
    import alignlab.evaluate.lm
    from alignlab.oversight import self_rewarding

    srv, url = server()
    out = tmp_path / "sr"
    real_load, real_judge = alignlab.evaluate.lm.load_lm, self_rewarding.judge_candidates

    def fail_in_iteration_one(lm, prompts, **kw):  # the server goes away while iteration 1 writes its data
        if (out / "iter0" / "iteration.json").exists() and not (out / "iter1").exists():
            srv.stop()
        return real_judge(lm, prompts, **kw)

    def fast_retry(spec, **kw):  # a dead server fails at once instead of after the default back-off
        from alignlab.evaluate.http_lm import HTTPOptions

        return real_load(spec, http=HTTPOptions(max_retries=0, timeout_s=5)) if "://" in str(spec) else real_load(spec)

    monkeypatch.setattr(self_rewarding, "judge_candidates", fail_in_iteration_one)
    monkeypatch.setattr(alignlab.evaluate.lm, "load_lm", fast_retry)
    argv = ["oversee", "self-rewarding", "--world", "--output", str(out), "--set", f"train_from={tiny_model_dir}",
            "--set", "iterations=2", "--set", "prompts=3", "--set", "eval_prompts=2", "--set", "n_candidates=2",
            "--set", "judge_samples=1", "--set", "max_tokens=4", "--set", "dpo_steps=1", "--set", "score_limit=7",
            "--set", "score_samples=1"]
    assert main(["oversee", "self-rewarding", "--model", url, *argv[2:]]) == 2
    assert "alignlab: error:" in capsys.readouterr().err  # the dead server is one line, not a traceback
    assert (out / "iter0" / "iteration.json").exists() and not (out / "iter1" / "iteration.json").exists()
    iter0 = (out / "iter0" / "iteration.json").read_text()
    # the re-run, against a new server (another port): iteration 0 is read back, not asked again
    srv2, url2 = server()
    monkeypatch.setattr(self_rewarding, "judge_candidates", real_judge)
    assert main(["oversee", "self-rewarding", "--model", url2, *argv[2:]]) == 2
    # the random model's ratings never parse, so the run now stops at iteration 1's data, written by the new server
    assert "iteration 1: the judge separated no candidates" in capsys.readouterr().err
    assert sum(srv2.app.state.logic.batcher.batches) == 3 * 2 * (1 + 1)  # 3 prompts x 2 candidates, each rated once
    assert (out / "iter0" / "iteration.json").read_text() == iter0
    assert json.loads(iter0)["judged_by"] == url and json.loads(iter0)["model"] == str(tiny_model_dir)


def test_process_supervision_reads_the_servers_solutions_with_the_local_tokenizer(tiny_model_dir) -> None:
    from alignlab.oversight import process_supervision as S
    from alignlab.world.skills.multistep import EVAL_PROBLEMS, PROBLEMS, multistep_prompts

    prompt = multistep_prompts(0, "oversight", PROBLEMS)[EVAL_PROBLEMS]
    text = "1 + 2 = 3. The answer is 3."
    served = ScriptedLM({prompt.text: [text]})  # a server: text only, no tokenizer
    local = HuggingFaceLM(str(tiny_model_dir), device="cpu")
    sols = S.sample_solutions(served, [prompt], 2, max_tokens=8, seed=0, reader=local)
    ids, positions = S.solution_tokens(local, prompt, text)
    assert served.calls == [[prompt.text, prompt.text]]
    assert sols.tokens == [[{"input_ids": ids, "positions": positions}] * 2] and len(positions) == 2


def test_process_supervision_through_a_server_stops_clearly_when_no_solution_states_a_step(tiny_model_dir, tmp_path,
                                                                                            server, capsys) -> None:
    srv, url = server()
    out = tmp_path / "ps"
    assert main(["oversee", "process-supervision", "--model", url, "--world", "--output", str(out), "--set",
                 f"train_from={tiny_model_dir}", "--set", "train_problems=2", "--set", "train_samples=2", "--set",
                 "eval_problems=2", "--set", "ns=[1,2]", "--set", "verifier_steps=1", "--set", "max_tokens=8"]) == 2
    assert sum(srv.app.state.logic.batcher.batches) == 4  # the random model's 2 x 2 solutions came from the server
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "alignlab: error: nothing to train the PRM on: none of the 4 sampled training solutions states a step")


# ---- pushing trained weights back to the server (alignlab serve --set allow_weight_reload=true) ----------


def test_with_push_every_iteration_samples_through_the_server_loaded_with_the_current_copy(tmp_path,
                                                                                         monkeypatch) -> None:
    from alignlab.oversight import world_run

    pushed: list[str] = []
    monkeypatch.setattr(world_run, "push_weights", lambda url, weights: pushed.append(f"{url} <- {weights}"))
    loads: list[str] = []

    def load(path):
        loads.append(str(path))
        return ScriptedLM(judge_script())

    log: list = []
    models = Models(URL, "local", push=True)
    entries = run_self_rewarding(models, [[Q], [Q]], [Q], tmp_path, SelfRewardSettings(iterations=2, n_candidates=2),
                                 load=load, train=_fake_train(log), truth=lambda lm: {"true_reward": 1.0},
                                 progress=lambda s: None)
    m1, m2 = str(tmp_path / "iter1" / "model"), str(tmp_path / "iter2" / "model")
    # M0 judges, then writes iteration 1's data, through the server holding the local weights; then M1, then M2
    assert pushed == [f"{URL} <- {w}" for w in ("local", "local", m1, m1, m2)]
    assert loads == [URL, "local", URL, URL, m1, URL, URL, m2]  # samples from the server, truth from the local copy
    assert [init for _, init, _, _ in log] == ["local", m1]
    assert entries[2]["data_from"] == f"{URL} serving {m1}"
    assert models.summary()["later_iterations"].startswith("sample through the server")


def test_push_weights_needs_a_server_url(tiny_model_dir, tmp_path, capsys) -> None:
    assert main(["oversee", "ida", "--model", str(tiny_model_dir), "--world", "--output", str(tmp_path / "o"),
                 "--set", "push_weights=true"]) == 2
    assert capsys.readouterr().err.startswith("alignlab: error: push_weights needs --model to be the URL of an "
                                              "alignlab serve started with allow_weight_reload=true")


def test_a_server_that_allows_reloads_loads_checked_weights_and_refuses_the_rest(tiny_model_dir, tmp_path,
                                                                               monkeypatch) -> None:
    from conftest import build_model

    from alignlab.core.models import load_tokenizer
    from alignlab.errors import EvalError, OversightError
    from alignlab.oversight.world_run import push_weights

    torch.set_num_threads(1)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    other, wider = tmp_path / "other", tmp_path / "wider"
    for path, kw in ((other, {"seed": 1}), (wider, {"hidden": 64})):
        tokenizer.save_pretrained(path)
        build_model(path, tokenizer, **kw)
    lm = HuggingFaceLM(str(tiny_model_dir), device="cpu")
    with pytest.raises(EvalError, match="allow_weight_reload needs an api_key"):
        make_server(lm, ServeConfig(model=str(tiny_model_dir), port=0, allow_weight_reload=True))
    srv = make_server(lm, ServeConfig(model=str(tiny_model_dir), port=0, allow_weight_reload=True, api_key="k"))
    url = srv.start()
    try:
        prompts = [[{"role": "user", "content": "What is 3 plus 4?"}], [{"role": "user", "content": "Hello!"}]]

        def greedy(model):
            return model.generate(prompts, max_tokens=6)

        monkeypatch.setenv("ALIGNLAB_API_KEY", "k")
        from alignlab.evaluate.http_lm import open_url

        served = open_url(url)
        before, local_other = greedy(served), greedy(HuggingFaceLM(str(other), device="cpu"))
        assert before == greedy(HuggingFaceLM(str(tiny_model_dir), device="cpu")) != local_other
        push_weights(url, other)
        assert greedy(served) == local_other  # the server now samples the pushed copy
        with pytest.raises(OversightError, match="not the served model's: 'model.embed_tokens.weight' has shape"):
            push_weights(url, wider)
        with pytest.raises(OversightError, match="not a directory holding"):
            push_weights(url, tmp_path / "missing")
        assert greedy(served) == local_other  # a refused push changes nothing
        monkeypatch.setenv("ALIGNLAB_API_KEY", "wrong")
        with pytest.raises(OversightError, match="HTTP 401"):
            push_weights(url, tiny_model_dir)
    finally:
        srv.stop()
    plain = make_server(lm, ServeConfig(model=str(tiny_model_dir), port=0))
    try:
        with pytest.raises(OversightError, match="HTTP 404.*allow_weight_reload=true"):
            push_weights(plain.start(), tiny_model_dir)
    finally:
        plain.stop()


def test_a_server_that_does_not_serve_the_default_weights_stops_the_run_before_it_writes(tiny_model_dir, tmp_path,
                                                                                          server, monkeypatch,
                                                                                          capsys) -> None:
    from types import SimpleNamespace

    from conftest import build_model

    import alignlab.world.base_model
    from alignlab.core.models import load_tokenizer
    from alignlab.oversight.world_run import prepare_training

    other = tmp_path / "other"
    build_model(other, load_tokenizer(str(tiny_model_dir)), seed=1)
    srv, url = server()  # serves the tiny model
    base = [other]  # the world's base model, which training would start from without train_from
    monkeypatch.setattr(alignlab.world.base_model, "build_base_model", lambda paths: base[0])
    out = tmp_path / "o"
    assert main(["oversee", "ida", "--model", url, "--world", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"alignlab: error: the server at {url} does not serve train_from {other} (greedy answers "
                          f"differ on ") and err.endswith(" of 3 probe prompts); pass --set train_from=<the served "
                                                          "model's weights>")
    assert not out.exists()  # stopped before anything was written
    config = SimpleNamespace(world=True, world_dir=None, world_seed=0, output=str(out), model=url, train_from="",
                             push_weights=False)
    asked = sum(srv.app.state.logic.batcher.batches)
    base[0] = tiny_model_dir  # the server holds the base model: the probe passes
    assert prepare_training(config)[2].weights == str(tiny_model_dir)
    assert sum(srv.app.state.logic.batcher.batches) == asked + 3  # three probe prompts were asked
    base[0] = other  # with push_weights the server is loaded with the base model first: no probe
    assert prepare_training(SimpleNamespace(**{**vars(config), "push_weights": True}))[2].weights == str(other)
    assert sum(srv.app.state.logic.batcher.batches) == asked + 3
