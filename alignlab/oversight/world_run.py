"""What every scalable-oversight experiment on the toy world shares: the oversight world and its base model,
what a method samples from and what it trains (:class:`Models`: the model may be a server URL while fine-tuning
trains a local copy), one fine-tuning call (SFT or DPO on rows a protocol produced), one scoring of a model on the
world's held-out prompts, and one row format for the oversight table.

The oversight world (size ``oversight``) is the small world plus the skills the protocols need (critique,
revision, refinement, rating, pairwise verdicts, confidence, multi-step arithmetic: :mod:`alignlab.world.skills`);
its pretrained base model has all of them, imperfectly and by a known amount, so it is the model every oversight
method starts from and the one it oversees.

A method's experiment writes, per seed, ``{"rows": [table_row(...), ...]}`` through
:func:`alignlab.core.provenance.write_result`; the docs' oversight table is rendered from those files.

Example::

    >>> row = table_row("cai-sl", {"true_reward": 2.0, "helpfulness": 0.5, "honesty": 0.9, "harmlessness": 1.0,
    ...                 "stderr": {"true_reward": 0.1}}, baseline="base", metric="critique_accuracy", value=0.8)
    >>> row["method"], row["baseline"], row["metric"], row["true_reward_stderr"]
    ('cai-sl', 'base', 'critique_accuracy', 0.1)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

# What the table shows of every model: the world's ground truth (see alignlab.world.evaluate).
SCORES = ("true_reward", "helpfulness", "honesty", "harmlessness")


@dataclass
class OversightRunConfig:
    """What every oversight method's command shares: the model, the oversight world, where it writes, the seed."""

    model: str = ""
    """model directory or server URL the protocol talks to (default: the oversight world's base model)"""
    world: bool = False
    """run on the oversight world (required: the world knows the truths)"""
    world_dir: str | None = None
    """a built oversight world (default: the user cache)"""
    world_seed: int = 0
    """the oversight world's seed (its base model is pretrained on first use: ~10 CPU-minutes)"""
    output: str = "runs/oversee"
    """run directory: results.json and any model the method trains"""
    seed: int = 0
    """seed of sampling and training"""


def oversight_world(world_dir: str | None = None, seed: int = 0):
    """(WorldPaths, World, base model directory) of the oversight world ``seed``: built (and its base model
    pretrained, ~10 CPU-minutes) on first use, cached after."""
    from alignlab.world.base_model import build_base_model
    from alignlab.world.build import build_world
    from alignlab.world.datasets import World

    paths = build_world(world_dir, seed=seed, size="oversight", verbose=False)
    return paths, World(paths.seed, paths.size), build_base_model(paths)


def prepare_world(config: OversightRunConfig, ours: tuple[str, ...] = (), *, model: str | None = None):
    """Check the run directory (``results.json`` and ``ours`` may be overwritten there; anything else alignlab did
    not write stops the run), then ``(paths, World, model)``: ``model`` (default ``config.model``) or, when it is
    empty, the oversight world's base model, which is built (pretrained on first use) only then."""
    from alignlab.core.rundir import check_results_dir
    from alignlab.errors import ConfigError
    from alignlab.world.build import build_world
    from alignlab.world.datasets import World

    if not config.world:
        raise ConfigError("alignlab oversee needs --world (the toy world is where the truths are known)")
    check_results_dir(Path(config.output), ours=("results.json", *ours))
    model = config.model if model is None else model
    if model:
        paths = build_world(config.world_dir, seed=config.world_seed, size="oversight", verbose=False)
        return paths, World(paths.seed, paths.size), model
    paths, world, base = oversight_world(config.world_dir, seed=config.world_seed)
    return paths, world, str(base)


# ---- sampling from one model (perhaps a server) while training a local copy --------------------------


def is_url(model: str | Path) -> bool:
    """Whether ``model`` is a server URL (``http[s][+chat|+completions]://...``) rather than local weights."""
    return "://" in str(model)


@dataclass
class TrainsLocally:
    """The field a fine-tuning method's config adds to :class:`OversightRunConfig`."""

    train_from: str = ""
    """local model directory fine-tuning starts from (default: --model when it is local, else the world's base model); --model may be a server URL"""


@dataclass
class PushesWeights:
    """The field an iterated method's config adds when every iteration may sample through the server."""

    push_weights: bool = False
    """load each local copy into the --model server before sampling from it (alignlab serve --set allow_weight_reload=true, an API key in ALIGNLAB_API_KEY), so every iteration samples through the server"""


@dataclass
class Models:
    """What a fine-tuning method samples from and what it trains.

    ``sample`` is the model the protocol talks to (``--model``: a directory or a server URL), ``weights`` the local
    copy fine-tuning starts from (``train_from``). An iterated method's first iteration samples from ``sample``;
    once it has trained a local copy, later iterations sample from that copy and train it further (:meth:`then`).
    With ``push`` (``sample`` an ``alignlab serve`` URL that allows weight reloads) every iteration samples through
    the server instead: :meth:`sampler` first loads the current local ``weights`` into it (:func:`push_weights`).
    Every stage notes where its samples came from (:attr:`source`) and which weights it trained (:meth:`note`);
    :meth:`summary` is the run result's ``sources``.

    Example::

        >>> m = Models("http://127.0.0.1:8000/v1", "base")
        >>> m.note("data", samples_from=m.sample)
        >>> m.note("sft", trained_from=m.weights, trained="run/sft")
        >>> later = m.then("run/sft")
        >>> later.sample, later.weights, later.summary()["server"], [s["stage"] for s in later.summary()["stages"]]
        ('run/sft', 'run/sft', True, ['data', 'sft'])
    """

    sample: str
    weights: str
    stages: list[dict[str, Any]] = field(default_factory=list)
    """every stage's note, shared with the Models :meth:`then` derives"""
    origin: tuple[str, str] | None = None
    """the run's first (sample, weights); set from them when None"""
    push: bool = False
    """load ``weights`` into the ``sample`` server before every sampling (:meth:`sampler`)"""

    def __post_init__(self) -> None:
        self.sample, self.weights = str(self.sample), str(self.weights)
        self.origin = self.origin or (self.sample, self.weights)

    def then(self, trained: str | Path) -> Models:
        """The next iteration's models: it trains the local copy ``trained`` and samples from it (with ``push``:
        through the server, loaded with it)."""
        return Models(self.sample if self.push else str(trained), str(trained), self.stages, self.origin, self.push)

    def sampler(self) -> str:
        """The model to sample from now: ``sample``, and with ``push`` the server is first loaded with
        ``weights`` (every time: another client may have loaded other weights since)."""
        if self.push:
            push_weights(self.sample, self.weights)
        return self.sample

    @property
    def source(self) -> str:
        """Where samples come from, as the results record it."""
        return f"{self.sample} serving {self.weights}" if self.push else self.sample

    def note(self, stage: str, *, samples_from: str | Path | dict[str, Any] | None = None,
             trained_from: str | Path | None = None, trained: str | Path | None = None) -> None:
        """Record that ``stage`` sampled from ``samples_from`` (a model, or role -> model) and/or fine-tuned the
        local weights ``trained_from`` into ``trained`` (a stage noted again replaces its note)."""
        entry: dict[str, Any] = {"stage": stage}
        if samples_from is not None:
            entry["samples_from"] = ({k: str(v) for k, v in samples_from.items()} if isinstance(samples_from, dict)
                                     else str(samples_from))
        if trained is not None:
            entry["trained_from"], entry["trained"] = str(trained_from), str(trained)
        self.stages[:] = [s for s in self.stages if s["stage"] != stage] + [entry]

    def summary(self) -> dict[str, Any]:
        """Where the run's samples came from and which weights it trained: the result's ``sources``."""
        model, weights = self.origin
        later = ("sample through the server, loaded with each trained local copy first" if self.push else
                 "sample from the trained local copy (its weights are not sent to the server)")
        return {"model": model, "server": is_url(model), "train_from": weights, "stages": list(self.stages),
                "later_iterations": later}


def push_weights(url: str, weights: str | Path, *, timeout_s: float = 300.0) -> None:
    """Load the local model directory ``weights`` into the ``alignlab serve`` at ``url`` (started with
    ``allow_weight_reload=true``; the bearer token is read as :func:`alignlab.evaluate.http_lm.open_url` reads it).
    The server reads the directory itself, so it must run on this machine (or see the same path)."""
    import urllib.error
    import urllib.request

    from alignlab.errors import OversightError
    from alignlab.evaluate.http_lm import open_url

    server = open_url(url)
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {server.api_key}"}
                                                       if server.api_key else {})
    body = json.dumps({"path": str(Path(weights).resolve())}).encode()
    request = urllib.request.Request(server.base_url + "/alignlab/weights", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:300]
        hint = " (start it with alignlab serve --set allow_weight_reload=true)" if err.code == 404 else ""
        raise OversightError(f"the server at {url} did not load {weights}: HTTP {err.code} {detail}{hint}") from err
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise OversightError(f"cannot reach the server at {url} to load {weights}: {err}") from err


def prepare_training(config: OversightRunConfig, ours: tuple[str, ...] = (), *, model: str | None = None):
    """:func:`prepare_world` for a method that fine-tunes: ``(paths, World, Models)``. The protocol samples from
    ``model`` (default ``config.model``; a directory or a server URL); fine-tuning starts from ``config.train_from``,
    else from ``model`` when it is local, else from the world's base model (built only when something falls back
    to it). ``train_from`` must be local weights: a URL or a missing path stops the run before anything runs.
    When ``model`` is a server URL and ``train_from`` falls back to the base model (no ``push_weights``, which
    loads the server with it first), the server must serve those weights: :func:`check_server_serves`."""
    from alignlab.errors import ConfigError

    model = config.model if model is None else model
    train_from = getattr(config, "train_from", "")
    if train_from and is_url(train_from):
        raise ConfigError(f"train_from must be a local model directory (fine-tuning trains local weights; a "
                          f"server's cannot be changed), got '{train_from}'")
    if train_from and not Path(train_from).expanduser().is_dir():
        raise ConfigError(f"train_from '{train_from}' is not a local model directory")
    push = getattr(config, "push_weights", False)
    if push and not is_url(model):
        raise ConfigError("push_weights needs --model to be the URL of an alignlab serve started with "
                          f"allow_weight_reload=true, got '{model or 'the world base model'}'")
    fallback = not train_from and is_url(model)  # training would start from weights nobody named
    train_from = train_from or (model if model and not is_url(model) else "")
    paths, world, found = prepare_world(config, ours, model=model if model and train_from else "")
    if fallback and not push:
        check_server_serves(model, found, paths)
    return paths, world, Models(model or found, train_from or found, push=push)


def check_server_serves(url: str, weights: str | Path, paths, *, probes: int = 3, max_tokens: int = 8) -> None:
    """Stop (ConfigError) unless the server at ``url`` serves the local ``weights``: ``probes`` world prompts
    answered greedily there and locally must read the same (greedy served == local: tests/test_served_parity.py).
    Cheap, and it keeps a run from sampling model X's data and training the base model on it."""
    from alignlab.errors import ConfigError
    from alignlab.evaluate.lm import load_lm
    from alignlab.world.datasets import load_prompts

    asked = [p.messages for p in round_robin(load_prompts(paths.datasets["prompts_eval"]), probes)]
    served = load_lm(url).generate(asked, max_tokens=max_tokens, temperature=0.0)
    local = load_lm(str(weights)).generate(asked, max_tokens=max_tokens, temperature=0.0)
    differ = sum(a != b for a, b in zip(served, local))
    if differ:
        raise ConfigError(f"the server at {url} does not serve train_from {weights} (greedy answers differ on "
                          f"{differ} of {len(asked)} probe prompts); pass --set train_from=<the served model's "
                          f"weights>")


def finetune(kind: str, rows: list[dict[str, Any]], init: str | Path, output: str | Path, *, max_steps: int,
             lr: float = 1e-4, batch_size: int = 16, seed: int = 0, beta: float = 0.1, max_length: int = 160,
             extra: list[str] | None = None) -> Path:
    """Fine-tune ``init`` on ``rows`` with ``kind`` = ``"sft"`` (rows ``{"messages": [...]}``) or ``"dpo"`` (rows
    ``{"prompt", "chosen", "rejected"}``, TRL's conversational format) through alignlab's one training loop, in
    fp32 without a progress bar; the rows are written beside the run (``output``-data.jsonl). ``extra`` holds
    more ``key=value`` overrides of the method's config. Returns the trained model's directory."""
    from alignlab.core.config import load_config
    from alignlab.errors import OversightError
    from alignlab.registry import get_method

    if kind not in ("sft", "dpo"):
        raise OversightError(f"finetune kind must be 'sft' or 'dpo', got {kind!r}")
    if not rows:
        raise OversightError(f"nothing to fine-tune {output} on: the protocol produced no {kind} rows")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    data = output.with_name(output.name + "-data.jsonl")
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    keys = [f"model.name_or_path={init}", f"data.path={data}", f"output={output}", "train.overwrite=true",
            f"train.max_steps={max_steps}", f"train.batch_size={min(batch_size, len(rows))}", f"train.lr={lr}",
            f"train.seed={seed}", "train.progress=false", "train.mixed_precision=no", "train.save_total_limit=1",
            f"data.max_length={max_length}", "train.warmup_steps=0"]
    if kind == "dpo":
        keys += [f"beta={beta}", f"reference_cache_dir={output / 'reference-cache'}"]
    config_cls, train = get_method(kind)
    train(load_config(config_cls, None, keys + list(extra or [])))
    return output


def world_scores(model: str | Path | Any, paths, *, samples: int = 4, limit: int | None = None, max_tokens: int = 48,
                 seed: int = 0) -> dict[str, Any]:
    """The world's ground truth for ``model`` (a directory or an LM of :mod:`alignlab.evaluate.lm`): ``samples``
    answers per held-out prompt (``limit`` of them, the families in turn: :func:`round_robin`) at temperature 1, graded by the judge, with standard
    errors clustered by prompt and each prompt's mean true reward (``per_prompt_reward``, for paired gains)."""
    from alignlab.evaluate.lm import load_lm
    from alignlab.world.datasets import load_prompts
    from alignlab.world.evaluate import evaluate_responses
    from alignlab.world.model_eval import sample_answers

    lm = load_lm(str(model)) if isinstance(model, (str, Path)) else model
    prompts = load_prompts(paths.datasets["prompts_eval"])
    if limit is not None and limit < len(prompts):
        prompts = round_robin(prompts, limit)
    if hasattr(lm, "complete"):  # a local model: the world's own protocol, through the one generator
        sampled = sample_answers(lm, prompts, samples=samples, max_tokens=max_tokens, temperature=1.0, seed=seed)
        asked, answers = sampled.prompts, sampled.answers
    else:  # any other LM (a server): the same prompts, sampled through the LM interface
        asked = list(prompts) * samples
        answers = lm.generate([p.messages for p in asked], max_tokens=max_tokens, temperature=1.0, seed=seed)
    scores = evaluate_responses(asked, answers, per_response=True)
    n = len(prompts)  # answer k is to prompt k % n
    per_prompt = [mean(scores["true_rewards"][i::n]) for i in range(n)]
    return {**{k: scores[k] for k in SCORES}, "stderr": {k: scores["stderr"].get(k) for k in SCORES},
            "per_prompt_reward": per_prompt, "n": scores["n"]}


def round_robin(prompts: list[Any], limit: int) -> list[Any]:
    """``limit`` prompts taken one family at a time in turn (each family's in file order), so every family is
    represented however small the limit (down to one prompt per family).

    Example::

        >>> from types import SimpleNamespace as P
        >>> [p.text for p in round_robin([P(family="a", text="a1"), P(family="a", text="a2"),
        ...                               P(family="b", text="b1")], 2)]
        ['a1', 'b1']
    """
    by_family: dict[str, list[Any]] = {}
    for prompt in prompts:
        by_family.setdefault(prompt.family, []).append(prompt)
    taken: list[Any] = []
    for rank in range(max(map(len, by_family.values()), default=0)):
        taken += [group[rank] for group in by_family.values() if rank < len(group)]
    return taken[:limit]


def table_row(method: str, scores: dict[str, Any], *, baseline: str | None, metric: str | None = None,
              value: float | None = None, stderr: float | None = None, parse_rate: float | None = None,
              **extra: Any) -> dict[str, Any]:
    """One row of the oversight table: a model's ground-truth ``scores`` (from :func:`world_scores`) with their
    standard errors, the row it is compared against (``baseline``, a method name of the same file, or None for a
    baseline itself), and the method's own oversight number (``metric`` = ``value`` ± ``stderr``, its judge's or
    critic's ``parse_rate`` beside it)."""
    row = {"method": method, "baseline": baseline, "metric": metric, "value": value, "value_stderr": stderr,
           "parse_rate": parse_rate}
    for key in SCORES:
        row[key] = scores.get(key)
        row[f"{key}_stderr"] = (scores.get("stderr") or {}).get(key)
    return {**row, **extra}

