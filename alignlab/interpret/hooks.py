"""Hook points with TransformerLens's names on the plain Hugging Face modules: read or replace any activation.

Every name is a place in the model's own forward pass, reached with a PyTorch hook on the module whose
input or output that activation is (the table per family is :mod:`alignlab.interpret.families`). There is
no weight conversion and no second copy of the model; hooks are context managers and are removed on exit,
also when the forward raises.

Shapes (``b`` batch, ``p`` position, ``h`` heads, ``h_kv`` key/value heads, ``d`` d_head, ``m`` d_model,
``f`` d_mlp, ``v`` vocabulary), as in TransformerLens:

- ``hook_embed``, ``hook_pos_embed`` (GPT-2), ``blocks.L.hook_resid_pre|mid|post``, ``blocks.L.ln1.hook_normalized``,
  ``blocks.L.ln2.hook_normalized``, ``blocks.L.hook_attn_out``, ``blocks.L.hook_mlp_in``,
  ``blocks.L.hook_mlp_out``, ``ln_final.hook_normalized``: ``[b, p, m]``
- ``blocks.L.attn.hook_q``, ``hook_rot_q``, ``hook_z``: ``[b, p, h, d]``; ``hook_k``, ``hook_v``, ``hook_rot_k``:
  ``[b, p, h_kv, d]``; ``hook_attn_scores``, ``hook_pattern``: ``[b, h, p_query, p_key]``;
  ``hook_result``: ``[b, p, h, m]``
- ``blocks.L.mlp.hook_pre``, ``hook_pre_linear`` (gated MLPs), ``hook_post``: ``[b, p, f]``
- ``unembed.hook_out``: the logits, ``[b, p, v]``

Attention scores and pattern exist only inside the attention function. When one of ``hook_rot_q``,
``hook_rot_k``, ``hook_attn_scores`` or ``hook_pattern`` is hooked, the model runs for that context under
:func:`hooked_attention`, the eager attention arithmetic with those four hook points in it (registered with
``transformers``' ``AttentionInterface``); otherwise its own attention implementation (e.g. SDPA) is left
alone, so hooks that do not need the pattern do not change the model's numbers. Eager and SDPA attention
agree to float rounding.

Example:
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64,
    ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).eval()
    >>> ids = torch.tensor([[1, 5, 7, 9]])
    >>> logits, cache = run_with_cache(model, ids, names=lambda n: n.endswith("hook_pattern"))
    >>> tuple(cache["blocks.0.attn.hook_pattern"].shape), len(cache)
    ((1, 4, 4, 4), 2)
    >>> with hooks(model, {"blocks.1.hook_resid_pre": lambda act, name: torch.zeros_like(act)}):
    ...     ablated = model(ids).logits
    >>> bool(torch.allclose(ablated, logits))
    False
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from alignlab.errors import InterpretError
from alignlab.interpret.families import Family, family_for_model_type

HookFn = Callable[[Tensor, str], "Tensor | None"]
"""``fn(activation, name)``: return None to only read, or a tensor of the same shape to replace the activation."""

BLOCK_POINTS: tuple[str, ...] = (
    "hook_resid_pre", "ln1.hook_normalized",
    "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q", "attn.hook_rot_k",
    "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "attn.hook_result",
    "hook_attn_out", "hook_resid_mid", "ln2.hook_normalized", "hook_mlp_in",
    "mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
)
"""Per-block hook points (``blocks.{L}.<point>``) in the order the forward pass reaches them."""

ATTENTION_FUNCTION_POINTS = frozenset({"attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores",
                                       "attn.hook_pattern"})
"""Points inside the attention function: hooking one runs attention eagerly (see the module docstring)."""

HOOKED_ATTENTION = "alignlab_hooked"
"""Name under which :func:`hooked_attention` is registered with transformers' attention interfaces."""

_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.(.+)")


# --------------------------------------------------------------------------------------------- names


def _block_point(name: str) -> str | None:
    """``'attn.hook_z'`` for ``'blocks.3.attn.hook_z'``; None for a name outside the blocks."""
    match = _BLOCK_NAME.fullmatch(name)
    return match.group(2) if match else None


def model_family(model: nn.Module) -> Family:
    """The module map of ``model`` from its ``config.model_type`` (InterpretError when unmapped)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise InterpretError(f"{type(model).__name__} has no config.model_type; expected a transformers "
                             "causal language model (e.g. LlamaForCausalLM)")
    return family_for_model_type(model_type)


def _block_points(family: Family) -> tuple[str, ...]:
    absent = set()
    if not family.rotary:
        absent |= {"attn.hook_rot_q", "attn.hook_rot_k"}
    if family.mlp_up is None and not family.fused_gate_up:
        absent.add("mlp.hook_pre_linear")
    return tuple(p for p in BLOCK_POINTS if p not in absent)


def n_layers(model: nn.Module) -> int:
    """Number of decoder layers (``blocks``) of ``model``."""
    return len(submodule(model, model_family(model).layers))


def hook_points(model: nn.Module) -> list[str]:
    """Every hook name valid for ``model``, in forward order.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> names = hook_points(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=40)))
        >>> names[:3], names[-2:]
        (['hook_embed', 'hook_pos_embed', 'blocks.0.hook_resid_pre'], ['ln_final.hook_normalized', 'unembed.hook_out'])
    """
    family = model_family(model)
    names = ["hook_embed"] + (["hook_pos_embed"] if family.pos_embed else [])
    points = _block_points(family)
    names += [f"blocks.{layer}.{point}" for layer in range(n_layers(model)) for point in points]
    return names + ["ln_final.hook_normalized", "unembed.hook_out"]


def check_hook_name(model: nn.Module, name: str) -> None:
    """Raise InterpretError for a name that is not a hook point of ``model``: a layer out of range, a point
    this family lacks, or an unknown name (with the closest valid names)."""
    valid = hook_points(model)
    if name in valid:
        return
    match = _BLOCK_NAME.fullmatch(name)
    layers = n_layers(model)
    if match and match.group(2) in BLOCK_POINTS and int(match.group(1)) >= layers:
        raise InterpretError(f"hook '{name}': layer {match.group(1)} out of range; the model has {layers} "
                             f"layers (blocks.0 to blocks.{layers - 1})")
    family_name = model.config.model_type
    if match and match.group(2) in BLOCK_POINTS:
        raise InterpretError(f"hook '{name}': {family_name} models have no '{match.group(2)}' "
                             f"(see hook_points(model))")
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see hook_points(model)"
    raise InterpretError(f"unknown hook name '{name}' for a {family_name} model{hint}")


def select_names(model: nn.Module, names: None | Sequence[str] | Callable[[str], bool]) -> list[str]:
    """Resolve a ``names=`` argument: None → every hook point, a callable → those it accepts, a list → checked."""
    if names is None:
        return hook_points(model)
    if callable(names):
        return [n for n in hook_points(model) if names(n)]
    if isinstance(names, str):
        names = [names]
    for name in names:
        check_hook_name(model, name)
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------------------------- hooks


def submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule(path)``, through a peft wrapper; InterpretError naming the path when absent."""
    if hasattr(root, "get_base_model"):  # a peft model (LoRA): the paths are those of the model it wraps
        root = root.get_base_model()
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise InterpretError(f"{type(root).__name__} has no submodule '{path}' that its family's hook map "
                             "expects; pass the causal-LM model (e.g. LlamaForCausalLM), not its base "
                             "model") from None


def _run(fns: Sequence[HookFn], activation: Tensor, name: str) -> Tensor | None:
    """Call the hook functions in order; the replacement (if any) after all of them, else None."""
    replaced = None
    for fn in fns:
        out = fn(activation if replaced is None else replaced, name)
        if out is not None:
            if not isinstance(out, Tensor) or out.shape != activation.shape:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise InterpretError(f"hook '{name}' returned {got}; a replacement must be a tensor of the "
                                     f"activation's shape {tuple(activation.shape)}")
            replaced = out
    return replaced


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _with_first(output: Any, first: Tensor) -> Any:
    return (first, *output[1:]) if isinstance(output, tuple) else first


def _on_output(module: nn.Module, name: str, fns: Sequence[HookFn], *, view: Callable[[Tensor], Tensor] =
               lambda t: t, unview: Callable[[Tensor, Tensor], Tensor] = lambda new, old: new,
               prepend: bool = False):
    """Forward hook: the activation is ``view(output)``; a replacement goes back as ``unview(new, output)``."""

    def hook(_module, _args, output):
        first = _first(output)
        new = _run(fns, view(first), name)
        return None if new is None else _with_first(output, unview(new, first))

    return module.register_forward_hook(hook, prepend=prepend)


def _on_input(module: nn.Module, name: str, fns: Sequence[HookFn], *, view: Callable[[Tensor], Tensor] =
              lambda t: t, unview: Callable[[Tensor, Tensor], Tensor] = lambda new, old: new):
    """Forward pre-hook on the first input (positional or ``hidden_states=``)."""

    def hook(_module, args, kwargs):
        positional = bool(args)
        first = args[0] if positional else kwargs["hidden_states"]
        new = _run(fns, view(first), name)
        if new is None:
            return None
        new = unview(new, first)
        return ((new, *args[1:]), kwargs) if positional else (args, {**kwargs, "hidden_states": new})

    return module.register_forward_pre_hook(hook, with_kwargs=True)


def _heads(head_dim: int) -> Callable[[Tensor], Tensor]:
    return lambda flat: flat.unflatten(-1, (-1, head_dim))


def _flat(new: Tensor, _old: Tensor) -> Tensor:
    return new.flatten(-2)


def _slice_of(start: int, stop: int, head_dim: int | None = None):
    """View and un-view of the ``[start:stop]`` slice of a fused projection's last dimension."""

    def view(t: Tensor) -> Tensor:
        part = t[..., start:stop]
        return part if head_dim is None else part.unflatten(-1, (-1, head_dim))

    def unview(new: Tensor, old: Tensor) -> Tensor:
        new = new if head_dim is None else new.flatten(-2)
        return torch.cat([old[..., :start], new, old[..., stop:]], dim=-1)

    return view, unview


def _per_head_weight(proj: nn.Module, n_heads: int, conv1d: bool) -> Tensor:
    """The output projection as W_O ``[h, d, m]`` (TransformerLens's layout), with the updates of any active,
    unmerged LoRA adapters on it (a peft layer's ``weight`` is its base weight alone)."""
    weight = proj.weight
    if hasattr(proj, "get_delta_weight") and not proj.merged and not proj.disable_adapters:
        for adapter in proj.active_adapters:
            if adapter in proj.lora_A:
                weight = weight + proj.get_delta_weight(adapter)
    weight = weight if conv1d else weight.T  # [h*d, m]
    return weight.unflatten(0, (n_heads, -1))


def _install_block_point(model: nn.Module, family: Family, layer: int, point: str, name: str,
                         fns: Sequence[HookFn]) -> list[Callable[[], None]]:
    """Register the hooks that expose ``blocks.{layer}.{point}``; returns their removers."""
    block = submodule(model, family.layers)[layer]
    attn = submodule(block, family.attn)
    config = model.config
    head_dim = attn.head_dim
    n_heads = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    handles = []

    if point == "hook_resid_pre":
        handles.append(_on_input(block, name, fns))
    elif point == "hook_resid_post":
        handles.append(_on_output(block, name, fns))
    elif point in ("ln1.hook_normalized", "ln2.hook_normalized"):
        handles.append(_on_output(submodule(block, family.ln1 if point.startswith("ln1") else family.ln2),
                                  name, fns))
    elif point == "hook_mlp_in":
        handles.append(_on_input(submodule(block, family.mlp), name, fns))
    elif point in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
        which = point[-1]
        if family.fused_qkv is None:
            proj = submodule(attn, {"q": family.q_proj, "k": family.k_proj, "v": family.v_proj}[which])
            handles.append(_on_output(proj, name, fns, view=_heads(head_dim), unview=_flat))
        else:
            sizes = {"q": n_heads * head_dim, "k": n_kv * head_dim, "v": n_kv * head_dim}
            start = {"q": 0, "k": sizes["q"], "v": sizes["q"] + sizes["k"]}[which]
            view, unview = _slice_of(start, start + sizes[which], head_dim)
            handles.append(_on_output(submodule(attn, family.fused_qkv), name, fns, view=view, unview=unview))
    elif point in ATTENTION_FUNCTION_POINTS:
        entry = (point, name, fns)
        table = attn.__dict__.setdefault("_alignlab_attention_hooks", [])
        table.append(entry)
        return [lambda: table.remove(entry)]
    elif point == "attn.hook_z":
        handles.append(_on_input(submodule(attn, family.o_proj), name, fns, view=_heads(head_dim),
                                 unview=_flat))
    elif point == "attn.hook_result":
        o_proj = submodule(attn, family.o_proj)

        def result_hook(_module, args, output):
            z = args[0].unflatten(-1, (n_heads, head_dim))  # [b, p, h, d]
            result = torch.einsum("bphd,hdm->bphm", z, _per_head_weight(o_proj, n_heads, family.conv1d))
            new = _run(fns, result, name)
            if new is None:
                return None
            return new.sum(-2) + (o_proj.bias if o_proj.bias is not None else 0)

        handles.append(o_proj.register_forward_hook(result_hook))
    elif point == "hook_attn_out":
        # prepend: edits of what attention adds must precede hook_resid_mid, read from the same output
        handles.append(_on_output(submodule(block, family.attn_out), name, fns, prepend=True))
    elif point == "hook_resid_mid":
        handles += _install_resid_mid(block, family, name, fns)
    elif point in ("mlp.hook_pre", "mlp.hook_pre_linear"):
        mlp = submodule(block, family.mlp)
        if family.fused_gate_up:
            d_mlp = submodule(mlp, family.mlp_pre).out_features // 2
            start = 0 if point == "mlp.hook_pre" else d_mlp
            view, unview = _slice_of(start, start + d_mlp)
            handles.append(_on_output(submodule(mlp, family.mlp_pre), name, fns, view=view, unview=unview))
        else:
            proj = family.mlp_pre if point == "mlp.hook_pre" else family.mlp_up
            handles.append(_on_output(submodule(mlp, proj), name, fns))
    elif point == "mlp.hook_post":
        handles.append(_on_input(submodule(submodule(block, family.mlp), family.mlp_down), name, fns))
    elif point == "hook_mlp_out":
        handles.append(_on_output(submodule(block, family.mlp_out), name, fns))
    else:  # pragma: no cover - BLOCK_POINTS and this dispatch are kept in step
        raise AssertionError(point)
    return [h.remove for h in handles]


def _install_resid_mid(block: nn.Module, family: Family, name: str, fns: Sequence[HookFn]) -> list:
    """``resid_mid = resid_pre + attn_out`` is a local variable of the layer's forward, not a module's input
    or output. Read it as the layer does (the residual is ln1's input, attention's addition is attn_out's
    output); a replacement ``new`` is written back as attention's addition ``new - resid_pre``, which the
    layer then adds to the residual: equal to ``new`` to float rounding."""
    resid_pre: list[Tensor] = []

    def remember(_module, args, kwargs):
        resid_pre[:] = [args[0] if args else kwargs["hidden_states"]]

    def hook(_module, _args, output):
        added = _first(output)
        new = _run(fns, resid_pre[0] + added, name)
        return None if new is None else _with_first(output, new - resid_pre[0])

    return [submodule(block, family.ln1).register_forward_pre_hook(remember, with_kwargs=True),
            submodule(block, family.attn_out).register_forward_hook(hook)]


def _install(model: nn.Module, family: Family, name: str, fns: Sequence[HookFn]) -> list[Callable[[], None]]:
    match = _BLOCK_NAME.fullmatch(name)
    if match:
        return _install_block_point(model, family, int(match.group(1)), match.group(2), name, fns)
    module = {"hook_embed": family.embed, "hook_pos_embed": family.pos_embed,
              "ln_final.hook_normalized": family.final_norm, "unembed.hook_out": family.unembed}[name]
    return [_on_output(submodule(model, module), name, fns).remove]


@contextlib.contextmanager
def hooks(model: nn.Module, fns: Mapping[str, HookFn | Sequence[HookFn]]) -> Iterator[nn.Module]:
    """Run ``model`` with hook functions at the named points; every hook is removed on exit, also on errors.

    ``fns`` maps a hook name to ``fn(activation, name)`` (or a list of them, called in order). A function that
    returns a tensor replaces the activation for the rest of the forward pass; one that returns None only
    reads. Names are checked before anything is registered (unknown names get close-match suggestions).

    Example:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=40)).eval()
        >>> seen = []
        >>> with hooks(model, {"blocks.0.attn.hook_z": lambda z, name: seen.append(z.shape)}):
        ...     _ = model(torch.tensor([[1, 2, 3]]))
        >>> seen, model.transformer.h[0].attn.c_proj._forward_pre_hooks
        ([torch.Size([1, 3, 2, 16])], OrderedDict())
    """
    family = model_family(model)
    # in forward order, so that within one context a point is always registered before those that read it
    order = {n: i for i, n in enumerate(hook_points(model))}
    for name in fns:
        if name not in order:
            check_hook_name(model, name)
    needs_eager = any(_block_point(name) in ATTENTION_FUNCTION_POINTS for name in fns)
    removers: list[Callable[[], None]] = []
    previous_attention = model.config._attn_implementation
    try:
        for name in sorted(fns, key=order.__getitem__):
            given = fns[name]
            removers += _install(model, family, name, [given] if callable(given) else list(given))
        if needs_eager:
            model.config._attn_implementation = HOOKED_ATTENTION
        yield model
    finally:
        if needs_eager:
            model.config._attn_implementation = previous_attention
        for remove in reversed(removers):
            remove()


# ----------------------------------------------------------------------------------- the attention function


def _repeat_kv(states: Tensor, groups: int) -> Tensor:
    """``[b, h_kv, p, d]`` → ``[b, h_kv * groups, p, d]``: each key/value head serves ``groups`` query heads."""
    return states if groups == 1 else states.repeat_interleave(groups, dim=1)


def hooked_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                     scaling: float | None = None, dropout: float = 0.0, softcap: float | None = None,
                     **_kwargs) -> tuple[Tensor, Tensor]:
    """Eager scaled dot-product attention (Vaswani et al. 2017, eq. 1) with hook points at the rotated
    queries and keys, the scores and the pattern; the arithmetic of transformers' ``eager_attention_forward``
    (scores in the model's dtype, softmax in float32, optional Gemma-2 logit soft-capping).

    ``query`` ``[b, h, p_q, d]``, ``key``/``value`` ``[b, h_kv, p_k, d]`` (post-rotary; keys include any cache);
    returns the per-head output ``[b, p_q, h, d]`` and the pattern ``[b, h, p_q, p_k]``.
    """
    entries = getattr(module, "_alignlab_attention_hooks", ())

    def at(point: str, activation: Tensor) -> Tensor:
        for hooked_point, name, fns in entries:
            if hooked_point == point:
                new = _run(fns, activation, name)
                activation = activation if new is None else new
        return activation

    # TransformerLens stores q and k as [b, p, h, d]
    query = at("attn.hook_rot_q", query.transpose(1, 2)).transpose(1, 2)
    key = at("attn.hook_rot_k", key.transpose(1, 2)).transpose(1, 2)
    groups = query.shape[1] // key.shape[1]
    keys, values = _repeat_kv(key, groups), _repeat_kv(value, groups)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, keys.transpose(2, 3)) * scaling  # [b, h, p_q, p_k]
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : keys.shape[-2]]
    scores = at("attn.hook_attn_scores", scores)
    pattern = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    pattern = at("attn.hook_pattern", pattern)
    pattern_dropped = nn.functional.dropout(pattern, p=dropout, training=module.training)
    output = torch.matmul(pattern_dropped, values).transpose(1, 2).contiguous()  # [b, p_q, h, d]
    return output, pattern


AttentionInterface.register(HOOKED_ATTENTION, hooked_attention)
AttentionMaskInterface.register(HOOKED_ATTENTION, eager_mask)


# ------------------------------------------------------------------------------------------------ cache


class ActivationCache(Mapping[str, Tensor]):
    """Cached activations by hook name (a read-only mapping), as TransformerLens's cache.

    Example:
        >>> cache = ActivationCache({"blocks.0.hook_resid_pre": torch.ones(1, 2, 3),
        ...                          "blocks.1.hook_resid_pre": torch.zeros(1, 2, 3)})
        >>> tuple(cache.stack("hook_resid_pre").shape)
        (2, 1, 2, 3)
    """

    def __init__(self, tensors: Mapping[str, Tensor]):
        self._tensors = dict(tensors)

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._tensors[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._tensors, n=3, cutoff=0.6)
            hint = f"; close: {', '.join(close)}" if close else ""
            raise InterpretError(f"'{name}' is not in the cache ({len(self)} names cached; pass it in "
                                 f"names= to run_with_cache){hint}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def get(self, name: str, default: Any = None) -> Any:
        return self._tensors.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} names)"

    def stack(self, point: str) -> Tensor:
        """``blocks.{L}.<point>`` of every cached layer stacked along a new first (layer) dimension."""
        layers = sorted(int(m.group(1)) for n in self._tensors
                        if (m := _BLOCK_NAME.fullmatch(n)) and m.group(2) == point)
        if not layers:
            raise InterpretError(f"no 'blocks.L.{point}' in the cache")
        return torch.stack([self._tensors[f"blocks.{layer}.{point}"] for layer in layers])


def run_with_cache(model: nn.Module, input_ids: Tensor | None = None,
                   names: None | Sequence[str] | Callable[[str], bool] = None,
                   **forward_kwargs) -> tuple[Tensor, ActivationCache]:
    """One forward pass of ``model`` that keeps the activations at ``names`` (all hook points when None; a
    list; or a predicate on names). Returns the logits and an :class:`ActivationCache`.

    The tensors are detached views of the activations the model computed (not copies); the forward runs in
    the caller's grad mode. ``forward_kwargs`` go to the model (``attention_mask=``, ...).
    """
    cache: dict[str, Tensor] = {}

    def keep(activation: Tensor, name: str) -> None:
        cache[name] = activation.detach()

    with hooks(model, {name: keep for name in select_names(model, names)}):
        output = model(input_ids=input_ids, **forward_kwargs)
    return output.logits, ActivationCache(cache)
