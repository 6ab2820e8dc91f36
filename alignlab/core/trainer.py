"""The one training loop. Every objective (SFT, reward, DPO family, ...) trains through :func:`train`.

An *objective* turns a micro-batch into a summed loss and per-example metrics; the loop does the
rest: sharding over processes (``accelerate``), gradient accumulation, clipping, warmup + linear /
cosine schedules, bf16 autocast, evaluation, ``metrics.jsonl``, a progress bar, atomic checkpoints,
exact ``--resume`` and a NaN/inf guard. The optimiser step and the run plumbing live in :class:`TrainingRun`,
which the online RL trainer uses too, so every method updates its weights through the same code.

Loss normalisation is global: the loop counts the items (tokens for SFT, pairs for DPO) in the whole
optimiser step over all micro-batches and processes, and divides the summed loss by that count. So
2 processes × batch 2, 1 process × batch 4, or 4 accumulation steps × batch 1 give the same gradient
(per-micro-batch means would weight short and long batches differently).

Example::

    >>> result = train(model, SFTObjective(), examples, collate, TrainConfig(max_steps=10), "runs/x")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from alignlab.core import checkpoint as ckpt
from alignlab.core.metrics import MetricsLogger
from alignlab.core.precision import fastest_precision
from alignlab.core.rundir import announced, clear_previous_run, output_problem, previous_run, write_run_files
from alignlab.core.tokenize import batch_order
from alignlab.errors import ConfigError, TrainingError


@dataclass
class LoopConfig:
    """Settings of the optimiser loop every method shares, offline and online: optimiser, schedule, precision,
    logging, checkpoints. Offline methods use :class:`TrainConfig`, which adds how batches are drawn from a
    dataset; online methods draw their batches from rollouts (their own ``prompts_per_step``, ``minibatch_size``)."""

    max_steps: int = -1
    """optimiser steps to run; -1 means `num_epochs` passes over the data"""
    num_epochs: float = 1.0
    """passes over the training data when `max_steps` is -1"""
    lr: float = 5e-5
    """peak learning rate"""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """optimiser (sgd is plain SGD without momentum, mostly for tests)"""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay"""
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    """learning-rate decay after warmup"""
    warmup_steps: int = 0
    """linear warmup steps (overrides `warmup_ratio` when > 0)"""
    warmup_ratio: float = 0.0
    """warmup as a fraction of all steps"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm to this; 0 disables clipping"""
    mixed_precision: Literal["auto", "bf16", "no"] = "auto"
    """bf16 autocast (loss in fp32); auto = bf16 where the hardware computes it natively (CUDA, AVX512-BF16/AMX)"""
    log_every: int = 1
    """write a metrics row every N steps"""
    save_every: int = 0
    """write a checkpoint every N steps (0 = only at the end)"""
    save_total_limit: int = 2
    """checkpoints to keep (oldest removed only after a newer one is complete)"""
    seed: int = 0
    """seed for data order, initialisation and sampling"""
    resume: bool = False
    """continue from the newest checkpoint in the output directory"""
    overwrite: bool = False
    """allow starting a fresh run in a directory that already holds one (its checkpoints, results and model
    weights are deleted first, so a crash of the new run cannot leave the old one looking finished)"""
    progress: bool = True
    """show a progress bar"""
    tensorboard: bool = False
    """also log to TensorBoard (if installed)"""

    def __post_init__(self) -> None:
        for name in ("num_epochs", "lr", "weight_decay", "warmup_ratio", "max_grad_norm"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in ("log_every", "save_total_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be positive or -1, got {self.max_steps}")
        if self.lr < 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")


@dataclass
class TrainConfig(LoopConfig):
    """Settings of the training loop over a dataset (every offline method): the shared loop settings plus
    how micro-batches are drawn, accumulated and evaluated."""

    batch_size: int = 8
    """examples per process per micro-batch"""
    grad_accum: int = 1
    """micro-batches per optimiser step (global batch = batch_size × processes × grad_accum)"""
    group_by_length: bool = True
    """batch examples of similar length together to avoid paying for padding"""
    eval_every: int = 0
    """evaluate every N steps (0 = only at the end, if there is eval data)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class ObjectiveOutput:
    """What an objective returns for one micro-batch."""

    loss_sum: torch.Tensor
    """the loss summed over this micro-batch's items (a scalar with grad)"""
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    """per-example values ([batch]) to average for logging, e.g. rewards, accuracies"""


class Objective(Protocol):
    """Turns a batch into a loss. A method is an objective plus its config."""

    def num_items(self, batch: dict[str, torch.Tensor]) -> int:
        """How many items (tokens, examples, pairs) the batch's loss sums over."""

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput: ...


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    history: list[dict[str, Any]]
    """every logged metrics row (also in metrics.jsonl)"""
    eval: dict[str, float]
    """the final evaluation, if there was eval data"""


def lr_lambda(config: LoopConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr at a step: linear warmup, then linear/cosine decay or constant."""
    warmup = config.warmup_steps or int(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        if config.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def _check_output_dir(output_dir: Path, config: LoopConfig, accelerator) -> None:
    """Refuse to start a fresh run over a previous one, or clear it with ``overwrite`` (the main process
    decides and clears, all processes raise)."""
    from accelerate.utils import broadcast_object_list

    # a directory start_run already checked may since hold the method's own files (a reference cache)
    check = previous_run if announced(output_dir) else output_problem
    problem = check(output_dir, config) if accelerator.is_main_process else None
    if accelerator.is_main_process and problem is None and config.overwrite and not config.resume:
        clear_previous_run(output_dir)
    if accelerator.num_processes > 1:
        problem = broadcast_object_list([problem])[0]
    if problem:
        raise ConfigError(problem)


def make_optimizer(params: list[nn.Parameter], config: LoopConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` names, over the trainable ``params``."""
    if not params:
        raise ConfigError("the model has no trainable parameters")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr)
    # The fused kernel updates all parameters in one pass: several times faster than the per-tensor loop on a
    # CPU, and what TRL/transformers use by default.
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)


def make_accelerator():
    """The loop's Accelerator: device placement, DDP/FSDP wrapping, gradient sync — never precision.

    Without a GPU, accelerate treats a torchrun/accelerate-launch job as one process unless told to use the
    CPU; cpu=True there gives MULTI_CPU on gloo (a no-op for a single process). Mixed precision is our own
    autocast: accelerate's state is a process-wide singleton that refuses a second Accelerator with another
    precision, and one Python session may train several models, or run TRL first (it asks for bf16).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    cpu = not torch.cuda.is_available()
    if not AcceleratorState._shared_state:
        return Accelerator(mixed_precision="no", cpu=cpu)
    # Another library set this process's precision already: join its state, but keep its autocast and
    # loss scaler out of our forward and backward passes.
    accelerator = Accelerator(cpu=cpu)
    accelerator.native_amp, accelerator.scaler = False, None
    return accelerator


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory a training step frees for the next step (once per process; returns
    whether it applies: Linux with glibc).

    By default glibc serves each large block (a layer's activations, the logits, their gradients) with its own
    ``mmap`` and returns it to the kernel when it is freed, so every step page-faults on every 4 KiB page of
    every large tensor again and the kernel zeroes each page anew: CPU time that does no arithmetic. With
    ``mmap`` off for malloc and the heap never trimmed, the next step reuses the freed blocks. The process
    then keeps its peak memory until it exits (a training process reaches that peak every step anyway); the
    numbers computed are the same. ``ALIGNLAB_KEEP_FREED_MEMORY=0`` in the environment turns it off (a notebook or
    a long-lived process that trains once and then wants its memory back).
    """
    if os.environ.get("ALIGNLAB_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
    except (AttributeError, ValueError, OSError):  # not glibc (macOS, Windows, musl)
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, -1))  # mallopt(3): -1 = never


def autocast(mixed_precision: str):
    """The autocast context the loop trains under, for work outside it (e.g. precomputing references)."""
    if _mixed_precision(mixed_precision) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16)


def _mixed_precision(choice: str) -> str:
    return fastest_precision().mixed_precision if choice == "auto" else choice


class TrainingRun:
    """The plumbing of one training run, shared by the offline loop (:func:`train`) and the online one
    (:class:`alignlab.outer.online.rollout.OnlineTrainer`): the one optimiser-step path and the run directory.

    Building it refuses (or, with ``overwrite``, clears) a previous run in ``output_dir``, makes the optimiser
    and the schedule, wraps the model for the processes (DDP), resumes from the newest checkpoint when
    ``config.resume`` is set (``start_step``, ``resumed_state``), opens ``metrics.jsonl`` and the progress bar.
    A step is then: for each micro-batch, the forward under :meth:`micro_batch` (autocast, and DDP's
    ``no_sync`` on all but the last) and :meth:`backward`; then :meth:`step` (NaN/inf guard, global-norm
    clipping, optimiser and schedule step, zero_grad); :meth:`log` and :meth:`save`; :meth:`finish` (the final
    checkpoint) at the end, or :meth:`close` when the run stops on an error.

    ``total_steps`` counts the run's steps (checkpoints, the progress bar); ``schedule_steps`` the optimiser
    updates the learning-rate schedule spans (an online step makes several).

    Example::

        >>> run = TrainingRun(make_accelerator(), model, config, "runs/x", total_steps=10)  # doctest: +SKIP
        >>> with run.micro_batch(last=True):                                              # doctest: +SKIP
        ...     loss = objective(run.model, batch)
        >>> run.backward(loss); grad_norm = run.step(0, float(loss))                     # doctest: +SKIP
    """

    def __init__(self, accelerator, model: nn.Module, config: LoopConfig, output_dir: str | Path, *,
                 total_steps: int, schedule_steps: int | None = None, desc: str = "train"):
        self.accelerator, self.config, self.total_steps = accelerator, config, total_steps
        keep_freed_memory()
        self.output_dir = Path(output_dir)
        _check_output_dir(self.output_dir, config, accelerator)
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        self.is_main = accelerator.is_main_process
        self.optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_lambda(config, schedule_steps or total_steps))
        self.model, self.optimizer = accelerator.prepare(model, self.optimizer)
        self.raw_model = accelerator.unwrap_model(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.ckpt_root = self.output_dir / "checkpoints"
        self.start_step, self.resumed_state = 0, {}
        if self.is_main:
            ckpt.clean_partial(self.ckpt_root)
        if config.resume and (dirs := ckpt.checkpoint_dirs(self.ckpt_root)):
            self.resumed_state = ckpt.load_newest_intact(dirs, model=self.raw_model, optimizer=self.optimizer,
                                                         scheduler=self.scheduler, rank=self.rank)
            self.start_step = self.resumed_state["step"]
        if self.is_main:
            write_run_files(self.output_dir)
        accelerator.wait_for_everyone()
        self.logger = MetricsLogger(self.output_dir / "metrics.jsonl",
                                    resume_step=self.start_step if config.resume else None,
                                    tensorboard=config.tensorboard) if self.is_main else None
        self.progress = _progress(total_steps, self.start_step, self.is_main and config.progress, desc)

    @property
    def lr(self) -> float:
        """The learning rate the next :meth:`step` uses."""
        return self.scheduler.get_last_lr()[0]

    def micro_batch(self, *, last: bool = True) -> contextlib.AbstractContextManager:
        """The context a micro-batch's forward runs in: the loop's autocast, and DDP's no_sync unless it is the
        step's ``last`` (gradients are all-reduced once per step, during the last backward)."""
        stack = contextlib.ExitStack()
        if not last:
            stack.enter_context(self.accelerator.no_sync(self.model))
        stack.enter_context(autocast(self.config.mixed_precision))
        return stack

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate ∇loss into the gradients. Under DDP they are averaged over processes, so a loss meant as
        Σ over the global batch / N must be passed as (this process's Σ) × processes / N."""
        self.accelerator.backward(loss)

    def step(self, step: int, loss: float) -> float:
        """Finish optimiser step ``step`` (0-based): stop on a non-finite ``loss`` or gradient norm before touching
        the weights, clip the global gradient norm, step the optimiser and the schedule, zero the gradients.
        Returns the gradient norm before clipping."""
        if not math.isfinite(loss):
            stop_non_finite(f"loss is {loss}", step, self.ckpt_root)
        if self.config.max_grad_norm > 0:
            grad_norm = float(self.accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm))
        else:
            grad_norm = float(torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None]))
        if not math.isfinite(grad_norm):
            stop_non_finite(f"gradient norm is {grad_norm}", step, self.ckpt_root)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def global_sum(self, value: float | torch.Tensor) -> float:
        """``value`` summed over processes (float64)."""
        if self.world == 1:
            return float(value)
        return float(self.accelerator.reduce(torch.as_tensor(value, dtype=torch.float64,
                                                             device=self.accelerator.device), "sum"))

    def log(self, row: dict[str, Any]) -> None:
        """Write a metrics row (main process; every process passes the same, already reduced row)."""
        if self.logger:
            self.logger.log(row)

    def save(self, step: int, state: dict[str, Any] | None = None) -> Path:
        """Write checkpoint ``step`` (model, optimiser, schedule, every process's RNG, ``state``); all processes
        call it, the main one writes the shared files."""
        return ckpt.save_checkpoint(
            self.ckpt_root, step, model=self.raw_model, optimizer=self.optimizer, scheduler=self.scheduler,
            rank=self.rank, state={"total_steps": self.total_steps, "world_size": self.world, **(state or {})},
            keep=self.config.save_total_limit, is_main=self.is_main, barrier=self.accelerator.wait_for_everyone)

    def save_due(self, done: int) -> bool:
        """Whether a periodic checkpoint is due after ``done`` steps (the final one is written by :meth:`finish`)."""
        return bool(self.config.save_every and done % self.config.save_every == 0 and done != self.total_steps)

    def finish(self, state: dict[str, Any] | None = None) -> None:
        """Write the final checkpoint (unless a resumed run had nothing left to do), close the bar and the log."""
        if self.start_step < self.total_steps or not ckpt.checkpoint_dirs(self.ckpt_root):
            self.save(self.total_steps, state)
        self.close()

    def close(self) -> None:
        self.progress.close()
        if self.logger:
            self.logger.close()


def train(
    model: nn.Module,
    objective: Objective,
    train_examples: Sequence[dict[str, Any]],
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    config: TrainConfig,
    output_dir: str | Path,
    *,
    eval_examples: Sequence[dict[str, Any]] | None = None,
    lengths: Sequence[int] | None = None,
    extra_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``objective`` over ``train_examples``; write metrics and checkpoints to ``output_dir``.

    ``lengths`` (one per example) enables length-grouped batching. The model itself is *not* saved in
    ``output_dir`` here: the method does that in its own format (``save_pretrained``).
    """
    from accelerate.utils import set_seed

    output_dir = Path(output_dir)
    accelerator = make_accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    set_seed(config.seed)

    global_batch = config.batch_size * world * config.grad_accum
    if len(train_examples) < global_batch:
        raise ConfigError(f"{len(train_examples)} training examples are fewer than one global batch "
                          f"({config.batch_size} × {world} processes × {config.grad_accum} accumulation)")
    steps_per_epoch = len(train_examples) // global_batch  # the last partial global batch is dropped
    total_steps = config.max_steps if config.max_steps > 0 else max(1, math.ceil(config.num_epochs * steps_per_epoch))
    lengths = lengths if lengths is not None else [len(e.get("input_ids", ())) for e in train_examples]
    run = TrainingRun(accelerator, model, config, output_dir, total_steps=total_steps)
    model = run.model

    epoch_cache: dict[int, list[list[int]]] = {}

    def step_indices(step: int) -> list[int]:
        epoch, k = divmod(step, steps_per_epoch)
        if epoch not in epoch_cache:
            epoch_cache.clear()
            epoch_cache[epoch] = batch_order(lengths, global_batch, seed=config.seed, epoch=epoch,
                                             group_by_length=config.group_by_length)
        return epoch_cache[epoch][k]

    history: list[dict[str, Any]] = []
    tokens_seen, clock = 0.0, time.perf_counter()
    for step in range(run.start_step, total_steps):
        indices = step_indices(step)
        micro_batches = []
        for a in range(config.grad_accum):
            lo = (a * world + rank) * config.batch_size
            micro_batches.append(collate([train_examples[i] for i in indices[lo:lo + config.batch_size]]))
        total_items = run.global_sum(sum(objective.num_items(b) for b in micro_batches))
        if total_items == 0:
            raise TrainingError(f"step {step + 1}: the batch has no items to learn from (all completions empty?)")

        model.train()
        loss_total = 0.0
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for a, batch in enumerate(micro_batches):
            with run.micro_batch(last=a == len(micro_batches) - 1):
                out = objective(model, batch)
                # DDP averages gradients over processes, hence × world: the result is Σ loss / Σ items.
                loss = out.loss_sum.float() * world / total_items
            run.backward(loss)
            loss_total += float(out.loss_sum.detach())
            for name, values in out.metrics.items():
                sums[name] = sums.get(name, 0.0) + float(values.detach().float().sum())
                counts[name] = counts.get(name, 0) + values.numel()
            # tokens through the model; a shared-prefix batch runs its prompts (prompt_mask) once, then the rest
            tokens_seen += sum(float(batch[k].sum()) for k in ("attention_mask", "prompt_mask") if k in batch)

        loss_value = run.global_sum(loss_total) / total_items
        lr = run.lr
        grad_norm = run.step(step, loss_value)
        done = step + 1

        eval_due = bool(eval_examples and config.eval_every and done % config.eval_every == 0 and done != total_steps)
        if done % config.log_every == 0 or done == total_steps or eval_due:
            elapsed = time.perf_counter() - clock
            row = {"step": done, "epoch": round(step / steps_per_epoch, 4), "loss": loss_value, "lr": lr,
                   "grad_norm": grad_norm, "tokens_per_s": run.global_sum(tokens_seen) / max(elapsed, 1e-9)}
            row.update({k: run.global_sum(sums[k]) / run.global_sum(counts[k]) for k in sums})
            if eval_due:
                row.update(evaluate(model, objective, eval_examples, collate, config, accelerator))
            tokens_seen, clock = 0.0, time.perf_counter()
            history.append(row)
            run.log(row)
            run.progress.set_postfix(loss=f"{loss_value:.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
        run.progress.update(1)
        if run.save_due(done):
            run.save(done, extra_state)

    final_eval: dict[str, float] = {}
    if eval_examples:
        final_eval = evaluate(model, objective, eval_examples, collate, config, accelerator)
        row = {"step": total_steps, **final_eval}
        history.append(row)
        run.log(row)
    run.finish(extra_state)
    return TrainResult(output_dir=output_dir, steps=total_steps, history=history, eval=final_eval)


@torch.no_grad()
def evaluate(model: nn.Module, objective: Objective, examples: Sequence[dict[str, Any]],
             collate: Callable, config: TrainConfig, accelerator) -> dict[str, float]:
    """Mean loss and metrics of ``objective`` over ``examples`` (sharded over processes), as ``eval/…``."""
    model.eval()
    world, rank = accelerator.num_processes, accelerator.process_index
    batch_size = config.batch_size
    loss_sum, items = 0.0, 0.0
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for lo in range(rank * batch_size, len(examples), world * batch_size):
        batch = collate(list(examples[lo:lo + batch_size]))
        with autocast(config.mixed_precision):
            out = objective(model, batch)
        loss_sum += float(out.loss_sum)
        items += objective.num_items(batch)
        for name, values in out.metrics.items():
            sums[name] = sums.get(name, 0.0) + float(values.float().sum())
            counts[name] = counts.get(name, 0.0) + values.numel()

    def total(x: float) -> float:
        return float(accelerator.reduce(torch.tensor(x, dtype=torch.float64, device=accelerator.device), "sum"))

    result = {"eval/loss": total(loss_sum) / max(total(items), 1.0)}
    for name in sorted(sums):
        result[f"eval/{name}"] = total(sums[name]) / max(total(counts[name]), 1.0)
    return result


def stop_non_finite(what: str, step: int, ckpt_root: Path) -> None:
    """Raise the NaN guard's TrainingError: what went wrong at 0-based ``step``, and which checkpoint is kept."""
    last = ckpt.latest_checkpoint(ckpt_root)
    kept = f"the last good checkpoint is '{last}' (resume with --resume)" if last else "no checkpoint was written yet"
    raise TrainingError(f"step {step + 1}: {what}; stopped before updating the weights; {kept}")


def _progress(total: int, initial: int, enabled: bool, desc: str = "train"):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="step", dynamic_ncols=True)
