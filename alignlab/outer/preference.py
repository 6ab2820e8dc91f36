"""Offline preference optimisation on pairs: the DPO family and the reference-free ORPO, SimPO, CPO.

The loss is any function of ``alignlab.outer.losses`` declared there with ``register_loss("pair")``; its
declaration says whether it needs a reference model and whether it scores answers by mean token log-prob,
and this file only gathers the log-probs it needs:

- policy log-probs of chosen and rejected together. With ``shared_prefix`` (the default) each prompt goes
  through the model once, its KV cache then serving both answers (gradients flow back through it), so a
  pair with a 64-token prompt and two 128-token answers costs 64 + 2·129 tokens instead of 2·192; otherwise
  the batch is the rows [prompt, chosen...; prompt, rejected...]. Both give the same log-probs, loss and
  gradients;
- reference log-probs in one of three ways (``reference``):
  ``precompute`` — computed once before training and cached on disk, keyed by the reference model and
  the tokenised data, so training holds a single model (the default);
  ``adapter`` — the policy with its LoRA adapter disabled (no second copy of the weights);
  ``model`` — a separate frozen model, forwarded every step.

Example::

    >>> from alignlab.outer.preference import PreferenceConfig, train_preference
    >>> cfg = PreferenceConfig(loss="ipo", beta=0.1)                              # doctest: +SKIP
    >>> cfg.model.name_or_path, cfg.data.path = "runs/sft", "pairs.jsonl"         # doctest: +SKIP
    >>> train_preference(cfg)                                                     # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from alignlab.core.data import load_records
from alignlab.core.logprobs import pair_logprobs
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.core.run import RunConfig, finish_run, start_run
from alignlab.core.tokenize import (
    PairCollator,
    SharedPrefixPairCollator,
    ensure_chat_template,
    shares_prompts,
)
from alignlab.core.trainer import ObjectiveOutput, TrainConfig, TrainResult, autocast, train
from alignlab.errors import ConfigError
from alignlab.outer.losses import LOSS_SPECS, get_loss_spec, pairwise_losses
from alignlab.outer.reward import encode_pairs, pair_lengths

LogprobsFn = Callable[[nn.Module, dict], dict[str, torch.Tensor]]
ReferenceFn = Callable[[nn.Module, dict], dict[str, torch.Tensor]]


@dataclass
class PreferenceConfig(RunConfig):
    """Preference optimisation on (prompt, chosen, rejected) pairs with a pairwise loss."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=5e-6))
    output: str = "runs/dpo"
    loss: str = "dpo"
    """pairwise loss from alignlab.outer.losses (one declared with register_loss("pair"); `alignlab train` lists
    them)"""
    beta: float | None = None
    """KL-regularisation strength β (the paper's λ for ORPO); unset = the loss's own default (0.1; SimPO 2.0)"""
    label_smoothing: float | None = None
    """probability that a label is flipped (cDPO, robust DPO, EXO, SimPO, CPO); unset = the loss's own default"""
    loss_kwargs: dict = field(default_factory=dict)
    """further keyword arguments of the loss, e.g. {f_divergence: js_divergence} or {gamma: 0.5}"""
    reference: Literal["precompute", "adapter", "model"] = "precompute"
    """where reference log-probs come from: cached once, the LoRA-disabled policy, or a separate frozen model"""
    reference_model: str | None = None
    """reference model path (default: the starting policy)"""
    reference_cache_dir: str | None = None
    """where precomputed reference log-probs are cached (default: the user cache directory)"""
    shared_prefix: bool = True
    """compute each pair's prompt once and reuse its KV cache for both answers (same log-probs and gradients,
    fewer tokens through the model); false: two full rows [prompt, chosen], [prompt, rejected]. Pairs whose
    two answers do not share the prompt always take the two-row layout"""

    def __post_init__(self) -> None:
        if get_loss_spec(self.loss).data != "pair":  # a mistyped name gets close-match suggestions
            raise ValueError(f"loss '{self.loss}' does not train on pairs; pairwise losses: {pairwise_losses()}")
        if self.reference == "adapter" and self.model.lora_r <= 0:
            raise ValueError("reference=adapter needs a LoRA adapter: set model.lora_r > 0")


def call_loss(name: str, policy: dict[str, torch.Tensor], reference: dict[str, torch.Tensor] | None,
              *, beta: float | None, label_smoothing: float | None, extra: dict[str, Any]) -> tuple[torch.Tensor, dict]:
    """Feed a pairwise loss exactly the arguments it declares (lengths, smoothing, NLL...)."""
    spec = get_loss_spec(name)
    loss_fn = spec.fn
    accepted = inspect.signature(loss_fn).parameters
    chosen_len = policy["chosen_len"].float().clamp(min=1)
    rejected_len = policy["rejected_len"].float().clamp(min=1)
    if spec.reference_free:
        if spec.mean_logps:
            args = [policy["chosen_logp"] / chosen_len, policy["rejected_logp"] / rejected_len]
        else:
            args = [policy["chosen_logp"], policy["rejected_logp"]]
        if "chosen_nll" in accepted:  # the SFT term: mean token NLL of the chosen answer
            args.append(-policy["chosen_logp"] / chosen_len)
    else:
        args = [policy["chosen_logp"], policy["rejected_logp"], reference["chosen_logp"], reference["rejected_logp"]]
    kwargs = {**({"beta": beta} if beta is not None else {}), **extra}
    if label_smoothing is not None and "label_smoothing" in accepted:
        kwargs["label_smoothing"] = label_smoothing
    if "chosen_lengths" in accepted:
        kwargs.update(chosen_lengths=policy["chosen_len"], rejected_lengths=policy["rejected_len"])
    unknown = set(kwargs) - set(accepted)
    if unknown:
        raise ConfigError(f"loss '{name}' takes no argument(s) {sorted(unknown)}; it takes {list(accepted)[4:]}")
    return loss_fn(*args, **kwargs)


class PreferenceObjective:
    """One pairwise loss over [chosen; rejected] batches; reference log-probs from the batch or a function."""

    def __init__(self, config: PreferenceConfig,
                 reference_fn: ReferenceFn | None = None):
        self.config, self.reference_fn = config, reference_fn
        self.bco_delta = 0.0  # BCO's running mean of implicit rewards (Jung et al. 2024, Sec. 3)

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].shape[0] // 2

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        cfg = self.config
        policy = pair_logprobs(model, batch)
        reference = None
        if not get_loss_spec(cfg.loss).reference_free:
            if "ref_chosen_logp" in batch:
                reference = {"chosen_logp": batch["ref_chosen_logp"], "rejected_logp": batch["ref_rejected_logp"]}
            else:
                with torch.no_grad():
                    reference = self.reference_fn(model, batch)
        extra = dict(cfg.loss_kwargs)
        if cfg.loss == "bco" and "delta" not in extra:
            extra["delta"] = self.bco_delta
        losses, metrics = call_loss(cfg.loss, policy, reference, beta=cfg.beta,
                                    label_smoothing=cfg.label_smoothing, extra=extra)
        if cfg.loss == "bco" and model.training:
            rewards = torch.cat([metrics["rewards_chosen"], metrics["rewards_rejected"]])
            self.bco_delta = 0.99 * self.bco_delta + 0.01 * float(rewards.mean())
        return ObjectiveOutput(loss_sum=losses.sum(), metrics={k: v.detach() for k, v in metrics.items()})


def adapter_reference(model: nn.Module, batch: dict, logprobs: LogprobsFn = pair_logprobs) -> dict[str, torch.Tensor]:
    """Reference = the policy with its LoRA adapter switched off (peft), no second copy of the weights."""
    from accelerate.utils import extract_model_from_parallel

    with extract_model_from_parallel(model).disable_adapter():
        return logprobs(model, batch)


def frozen_reference(reference: nn.Module, logprobs: LogprobsFn = pair_logprobs) -> ReferenceFn:
    reference.eval().requires_grad_(False)
    return lambda _policy, batch: logprobs(reference, batch)


def model_fingerprint(name_or_path: str) -> str:
    """Identify a model by its path and its weight files' sizes and modification times (cheap, no hashing)."""
    path = Path(name_or_path)
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) if path.is_dir() else []
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps([str(path.resolve()) if files else name_or_path, stats]).encode()).hexdigest()


def pair_collator(pad_token_id: int, examples: list[dict], shared_prefix: bool = True,
                  sides: tuple[str, str] = ("chosen", "rejected")) -> PairCollator | SharedPrefixPairCollator:
    """The shared-prefix collator where it applies (asked for, and every pair's two sides share the prompt),
    else the two-rows-per-pair one."""
    if shared_prefix and shares_prompts(examples, *sides):
        return SharedPrefixPairCollator(pad_token_id)
    return PairCollator(pad_token_id)


def precompute_reference(examples: list[dict], reference: nn.Module, *, pad_token_id: int, key: str,
                         cache_dir: Path, batch_size: int, mixed_precision: str,
                         sides: tuple[str, str] = ("chosen", "rejected"), shared_prefix: bool = True) -> None:
    """Add ``ref_<side>_logp`` for both ``sides`` to every example, from the disk cache when present.

    Each example holds two encodings (``chosen``/``rejected`` for pairs; KTO uses ``completion``/``kl``);
    both go through the reference in one forward per batch (one row per pair when they share the prompt
    and ``shared_prefix`` is on).
    """
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    from alignlab.core.io import atomic_replace

    first, second = sides
    ids = hashlib.sha256(json.dumps([[e[first]["input_ids"], e[first]["labels"], e[second]["input_ids"],
                                      e[second]["labels"]] for e in examples]).encode()).hexdigest()
    path = cache_dir / f"{hashlib.sha256((key + ids + mixed_precision).encode()).hexdigest()[:32]}.safetensors"
    cached = load_file(str(path)) if path.exists() else None
    if cached is None or cached["chosen"].shape[0] != len(examples):
        collate = pair_collator(pad_token_id, examples, shared_prefix, sides)
        reference.eval()
        chosen, rejected = [], []
        with torch.no_grad(), autocast(mixed_precision):
            for lo in tqdm(range(0, len(examples), batch_size), desc="reference log-probs", leave=False):
                rows = [{"chosen": e[first], "rejected": e[second]} for e in examples[lo:lo + batch_size]]
                out = pair_logprobs(reference, collate(rows))
                chosen.append(out["chosen_logp"].float())
                rejected.append(out["rejected_logp"].float())
        cached = {"chosen": torch.cat(chosen), "rejected": torch.cat(rejected)}
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_replace(path) as tmp:
            save_file(cached, str(tmp))
    for e, c, r in zip(examples, cached["chosen"].tolist(), cached["rejected"].tolist()):
        e[f"ref_{first}_logp"], e[f"ref_{second}_logp"] = c, r


def prepare_reference(mode: str, ref_path: str, load: dict[str, Any], example_sets: list[list[dict] | None], *,
                      pad_token_id: int, cache_dir: str | None, train_config: TrainConfig,
                      sides: tuple[str, str] = ("chosen", "rejected"),
                      logprobs: LogprobsFn = pair_logprobs, policy: nn.Module | None = None,
                      shared_prefix: bool = True) -> ReferenceFn | None:
    """Set the reference up as ``mode`` says; returns the per-step reference function (None = precomputed).

    ``precompute`` writes ``ref_<side>_logp`` into every example of ``example_sets``. ``policy`` is the
    not-yet-trained policy when it was loaded from ``ref_path`` itself: then it scores the data before
    training starts and no second copy of the weights is ever loaded (peak memory = one model).
    """
    if mode == "adapter":
        return functools.partial(adapter_reference, logprobs=logprobs)
    if mode == "model":
        return frozen_reference(load_causal_lm(ref_path, **load), logprobs)
    reference = policy if policy is not None else load_causal_lm(ref_path, **load)
    for examples in filter(None, example_sets):
        precompute_reference(examples, reference, pad_token_id=pad_token_id, key=model_fingerprint(ref_path),
                             cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(),
                             batch_size=train_config.batch_size * 2, mixed_precision=train_config.mixed_precision,
                             sides=sides, shared_prefix=shared_prefix)
    return None  # training holds one model: the reference goes out of scope here


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("alignlab")) / "reference_logps"


def train_preference(config: PreferenceConfig, *, model: nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Train a policy on preference pairs with ``config.loss``; the model is saved in ``config.output``."""
    out = start_run(config, config.output)
    tokenizer = tokenizer or load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    train_records, eval_records = load_records(config.data, "pair", seed=config.train.seed)
    train_examples = encode_pairs(tokenizer, train_records, config.data, config.data.path)
    eval_examples = encode_pairs(tokenizer, eval_records, config.data, "eval data") if eval_records else None
    load = dict(dtype=config.model.dtype, trust_remote_code=config.model.trust_remote_code)
    loaded_here = model is None and config.reference_model in (None, config.model.name_or_path)
    model = model or load_causal_lm(config.model.name_or_path, lora=config.model.lora(), **load)
    reference_fn = None
    if not get_loss_spec(config.loss).reference_free:
        reference_fn = prepare_reference(config.reference, config.reference_model or config.model.name_or_path, load,
                                         [train_examples, eval_examples], pad_token_id=tokenizer.pad_token_id,
                                         cache_dir=config.reference_cache_dir, train_config=config.train,
                                         policy=model if loaded_here else None, shared_prefix=config.shared_prefix)
    collate = pair_collator(tokenizer.pad_token_id, train_examples + (eval_examples or []), config.shared_prefix)
    if isinstance(collate, SharedPrefixPairCollator):  # group batches by the packed row's length
        lengths = [len(e["chosen"]["input_ids"]) + len(e["rejected"]["completion_ids"]) for e in train_examples]
    else:
        lengths = pair_lengths(train_examples)
    result = train(model, PreferenceObjective(config, reference_fn), train_examples, collate, config.train, out,
                   eval_examples=eval_examples, lengths=lengths)
    finish_run(model, tokenizer, result, merge_lora=config.model.merge_lora)
    return result


_DERIVED = {"PAIRWISE": lambda spec: spec.data == "pair", "REFERENCE_FREE": lambda spec: spec.reference_free,
            "MEAN_LOGPS": lambda spec: spec.mean_logps}


def __getattr__(name: str) -> set[str]:
    """``PAIRWISE``, ``REFERENCE_FREE`` and ``MEAN_LOGPS`` still import for one release (with a DeprecationWarning):
    each loss's declaration in alignlab.outer.losses (``LOSS_SPECS``) now says what they listed."""
    if name in _DERIVED:
        warnings.warn(f"alignlab.outer.preference.{name} is deprecated and will be removed in the next release; "
                      "read alignlab.outer.losses.LOSS_SPECS", DeprecationWarning, stacklevel=2)
        return {loss for loss, spec in LOSS_SPECS.items() if spec.data == "pair" and _DERIVED[name](spec)}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
