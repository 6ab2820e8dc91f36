"""``alignlab serve``: an OpenAI-compatible HTTP server over a local model (FastAPI on uvicorn).

Endpoints: ``GET /v1/models``, ``POST /v1/completions`` (a string or token-id prompt; ``echo`` +
``logprobs`` return the prompt's own token log-probs, so log-likelihood tasks work through the server)
and ``POST /v1/chat/completions`` (rendered with the tokenizer's chat template). Request bodies are
pydantic models; a bad one gets HTTP 400 with ``{"error": {"message": ...}}``, as does every error the app
answers (401, 404, 405, 408, 413, 500, 504), so a client never parses HTML or a traceback. Two answers come
from uvicorn itself, as short plain text: 400 for a request the HTTP parser rejects (a ``Content-Length``
that is not a number) and 503 over the connection limit.

What the server guarantees (each is a test in ``tests/test_serve.py``):

- **Body size**: a body over ``max_body_bytes`` (declared or streamed) is answered 413 and the connection
  is closed, so no part of it is read as a next request. Invalid ``Content-Length`` values are refused
  by the HTTP parser (h11) with 400.
- **Prompt size**: a token-id prompt's length is checked before anything else is done with it; prompt +
  ``max_tokens`` must fit ``max_prompt_tokens``.
- **Time**: a request body must arrive within ``body_timeout_s``, a new connection must send its first
  request within ``header_timeout_s``, an idle keep-alive connection is closed after
  ``keep_alive_timeout_s``, and a request waits at most ``request_timeout_s`` for the model (then 504).
- **Connections**: at most ``max_connections`` at once; more get 503.
- **Auth**: with an API key (``api_key`` or the ``ALIGNLAB_API_KEY`` environment variable), every route
  needs ``Authorization: Bearer KEY`` (401 otherwise). ``Host`` headers outside ``allowed_hosts`` get 400
  (DNS-rebinding protection for a loopback server).
- **Address**: loopback only unless ``allow_public=true``.
- **Weights**: only with ``allow_weight_reload=true`` and an API key, ``POST /v1/alignlab/weights`` with
  ``{"path": DIR}`` loads a fine-tuned copy of the served model from a directory on the server's machine
  (safetensors; every tensor's name and shape, read from the headers first, ``config.json`` and the tokenizer files
  must match the served model's, else 400 and nothing changes), between generations, so an online method's next
  iteration samples its new weights through the same server. A reload answered 504 never happens later. Nothing
  tags a generation with the weights that wrote it: one client (one run) per reload-enabled server.

Greedy generation requests that wait while the model is busy are run as one batch (up to
``max_batch_size``); sampled ones run alone, so a seed gives the same text whatever else is waiting.
Defaults of a request that omits them: ``temperature`` 0 (greedy, as alignlab's LM interface; OpenAI's API
samples at 1), ``top_p`` 1, and no ``seed``: fresh random numbers each request. Requests sent the same seed draw the
same random numbers, so a client that samples many prompts sends each its own (``http_lm.request_seeds``).

Example::

    $ alignlab serve --model runs/sft --port 8000
    >>> from alignlab.evaluate.http_lm import OpenAILM
    >>> OpenAILM("http://127.0.0.1:8000/v1").generate(["Hello"], max_tokens=8)   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from alignlab.errors import EvalError
from alignlab.evaluate.lm import HuggingFaceLM, cut_at_stop

API_KEY_ENV = "ALIGNLAB_API_KEY"


@dataclass
class ServeConfig:
    """An OpenAI-compatible HTTP server over a local model (loopback addresses only by default)."""

    model: str
    """model dir, run dir or hub name"""
    port: int = 8000
    """TCP port (0: any free port)"""
    host: str = "127.0.0.1"
    """address to bind; a loopback address unless allow_public is true"""
    allow_public: bool = False
    """allow a non-loopback host (the server then answers anyone who can reach it: set an api_key)"""
    name: str | None = None
    """model name reported by /v1/models (null: the model path)"""
    max_tokens_cap: int = 512
    """largest max_tokens a request may ask for"""
    max_prompt_tokens: int | None = None
    """largest prompt + max_tokens in tokens (null: the model's context length)"""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """weights dtype"""
    api_key: str | None = None
    """bearer token every request must send (null: the ALIGNLAB_API_KEY environment variable, if set)"""
    allowed_hosts: list[str] = field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])
    """Host header names accepted (without the port); ["*"]: any"""
    max_body_bytes: int = 1 << 20
    """largest request body; a larger one gets 413 and the connection is closed"""
    max_connections: int = 64
    """connections (and requests in flight) at once; more get 503"""
    max_batch_size: int = 8
    """greedy requests waiting for the model that run as one batch (1: no batching)"""
    request_timeout_s: float = 120.0
    """seconds a request may wait for the model before it gets 504"""
    body_timeout_s: float = 10.0
    """seconds a request body may take to arrive"""
    header_timeout_s: float = 10.0
    """seconds a new connection may take to send its first request"""
    keep_alive_timeout_s: int = 5
    """seconds an idle keep-alive connection stays open"""
    allow_weight_reload: bool = False
    """accept POST /v1/alignlab/weights {"path": DIR}: load a fine-tuned copy of the served model (same tensors, safetensors) from this machine; needs an api_key"""

    def __post_init__(self) -> None:
        for key in ("max_tokens_cap", "max_body_bytes", "max_connections", "max_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("request_timeout_s", "body_timeout_s", "header_timeout_s", "keep_alive_timeout_s"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")


def _check_host(config: ServeConfig) -> None:
    try:
        loopback = config.host == "localhost" or ipaddress.ip_address(config.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not config.allow_public:
        raise EvalError(
            f"alignlab serve binds loopback addresses only (127.0.0.1, ::1), not '{config.host}'; "
            "set allow_public=true (and an api_key) to serve a network"
        )


# ---- request bodies ----------------------------------------------------------------------------------
Temperature = Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False, strict=True)]
TopP = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False, strict=True)]
Seed = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]  # the range torch.manual_seed takes without overflow


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (user, ...)

    model: str | None = None
    max_tokens: Annotated[StrictInt, Field(ge=0)] | None = None
    temperature: Temperature = 0.0
    top_p: TopP = 1.0
    seed: Seed | None = None  # none: a fresh one per request, as OpenAI's API (a fixed default repeats one sample)
    n: Literal[1] = 1
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=4)] | None = None

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_Sampling):
    prompt: StrictStr | list[StrictInt]
    echo: StrictBool = False
    logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: StrictStr


class ChatRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]


class WeightsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Annotated[StrictStr, Field(min_length=1)]


class BadRequest(Exception):
    """A request the server refuses (answered with HTTP 400)."""


@dataclass
class _Options:
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: list[str]

    def batch_key(self) -> tuple | None:
        """Requests with equal keys may share a batch; sampled ones never do (their seed fixes their text)."""
        if self.temperature > 0:
            return None
        return (self.max_tokens, tuple(self.stop))


# ---- the model side ----------------------------------------------------------------------------------
class Batcher:
    """Runs generation requests on one model thread; greedy requests that wait together run as one batch.

    Nothing waits on purpose: while a batch runs, new requests queue, and the next batch takes every
    queued request with the same options as the oldest one (up to ``max_batch_size``).
    """

    def __init__(self, lm: HuggingFaceLM, max_batch_size: int):
        self.lm, self.max_batch_size = lm, max_batch_size
        self.model_thread = ThreadPoolExecutor(max_workers=1)  # one forward at a time: torch uses every core
        self.waiting: list[tuple[list[int], _Options, asyncio.Future]] = []
        self.wake = asyncio.Event()
        self.batches: list[int] = []  # size of each batch run (for tests and the load benchmark)

    async def run_on_model(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.model_thread, fn, *args)

    async def generate(self, ids: list[int], opts: _Options) -> list[int]:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((ids, opts, future))
        self.wake.set()
        return await future

    async def work(self) -> None:
        while True:
            await self.wake.wait()
            first_key = self.waiting[0][1].batch_key()
            size = self.max_batch_size if first_key is not None else 1
            batch = [w for w in self.waiting if w[1].batch_key() == first_key][:size] if first_key else self.waiting[:1]
            self.waiting = [w for w in self.waiting if not any(w is b for b in batch)]
            if not self.waiting:
                self.wake.clear()
            batch = [w for w in batch if not w[2].done()]  # a timed-out request's slot is not computed
            if not batch:
                continue
            opts = batch[0][1]
            self.batches.append(len(batch))
            try:
                rows = await self.run_on_model(self._generate_ids, [ids for ids, _, _ in batch], opts)
            except Exception as err:  # the requests get a 500 each; the server keeps serving
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, _, future), row in zip(batch, rows):
                if not future.done():
                    future.set_result(row)

    def _generate_ids(self, prompts: list[list[int]], opts: _Options) -> list[list[int]]:
        return self.lm.generate_ids(prompts, stop=opts.stop, max_tokens=opts.max_tokens,
                                    temperature=opts.temperature, top_p=opts.top_p, seed=opts.seed)


class ModelServer:
    """The request logic, separate from HTTP so it reads top to bottom and can be called directly."""

    def __init__(self, lm: HuggingFaceLM, config: ServeConfig):
        self.lm, self.config = lm, config
        self.name = config.name or config.model
        self.max_prompt_tokens = min(config.max_prompt_tokens or lm.max_length, lm.max_length)
        self.batcher: Batcher | None = None  # made inside the server's event loop

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "alignlab"}]}

    def _options(self, req: _Sampling, default_tokens: int) -> _Options:
        max_tokens = default_tokens if req.max_tokens is None else req.max_tokens
        if max_tokens > self.config.max_tokens_cap:
            raise BadRequest(f"'max_tokens' must be at most {self.config.max_tokens_cap}, got {max_tokens}")
        seed = secrets.randbits(63) if req.seed is None else req.seed
        return _Options(max_tokens, req.temperature, req.top_p, seed, req.stop_list())

    def _check_prompt_len(self, n_prompt: int, max_tokens: int) -> None:
        if not n_prompt:
            raise BadRequest("the prompt is empty")
        if n_prompt + max_tokens > self.max_prompt_tokens:
            raise BadRequest(f"prompt ({n_prompt} tokens) + max_tokens ({max_tokens}) exceeds the "
                             f"{self.max_prompt_tokens}-token limit")

    async def _generate(self, ids: list[int], opts: _Options) -> tuple[list[int], str, str]:
        if opts.max_tokens == 0:
            return [], "", "length"
        assert self.batcher is not None
        new = await self.batcher.generate(ids, opts)
        raw = self.lm.tokenizer.decode(new, skip_special_tokens=True)
        text = cut_at_stop(raw, opts.stop)
        finish = "length" if len(new) >= opts.max_tokens and text == raw else "stop"
        return new, text, finish

    @torch.no_grad()
    def _token_logprobs(self, ids: list[int], top: int) -> tuple[list[float | None], list[dict[str, float] | None]]:
        """log p(x_i | x_<i) of every token (None for the first) and the ``top`` most likely alternatives."""
        logits = self.lm.model(input_ids=torch.tensor([ids], device=self.lm.device), use_cache=False).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)[:-1]  # position i predicts token i + 1
        chosen = logprobs.gather(1, torch.tensor(ids[1:], device=logprobs.device)[:, None]).squeeze(1)
        decode = self.lm.tokenizer.decode
        tops: list[dict[str, float] | None] = [None]
        if top:
            values, indices = logprobs.topk(top, dim=-1)
            tops += [{decode([int(i)]): float(v) for v, i in zip(vs, ix)} for vs, ix in zip(values, indices)]
        else:
            tops += [None] * (len(ids) - 1)
        return [None] + [float(x) for x in chosen], tops

    async def completions(self, req: CompletionRequest) -> dict[str, Any]:
        opts = self._options(req, default_tokens=16)
        tok = self.lm.tokenizer
        if isinstance(req.prompt, str):
            # as the local model tokenises it: a text that starts with BOS does not get a second one
            enc = tok(req.prompt, return_offsets_mapping=True,
                      add_special_tokens=self.lm.encoder.adds_special_tokens(req.prompt))
            ids, prompt_text = enc["input_ids"], req.prompt
            self._check_prompt_len(len(ids), opts.max_tokens)
            offsets = [start for start, _ in enc["offset_mapping"]]
        else:
            ids = req.prompt
            self._check_prompt_len(len(ids), opts.max_tokens)  # before any decoding: that is what costs
            if max(ids) >= len(tok) or min(ids) < 0:
                raise BadRequest("a token id in 'prompt' is outside the vocabulary")
            prompt_text = tok.decode(ids)
            offsets = [len(tok.decode(ids[:i])) for i in range(len(ids))] if req.logprobs is not None else []
        new, text, finish = await self._generate(ids, opts)
        logprobs = None
        if req.logprobs is not None:
            every = ids + new
            token_lp, tops = await self.batcher.run_on_model(self._token_logprobs, every, req.logprobs)
            offsets = offsets + [len(prompt_text) + len(tok.decode(new[:i])) for i in range(len(new))]
            keep = range(0 if req.echo else len(ids), len(every))
            logprobs = {
                "tokens": [tok.decode([every[i]]) for i in keep],
                "token_logprobs": [token_lp[i] for i in keep],
                "top_logprobs": [tops[i] for i in keep] if req.logprobs else None,
                "text_offset": [offsets[i] for i in keep],
            }
        choice = {"index": 0, "text": (prompt_text if req.echo else "") + text, "finish_reason": finish,
                  "logprobs": logprobs}
        return self._wrap("text_completion", choice, len(ids), len(new))

    async def chat(self, req: ChatRequest) -> dict[str, Any]:
        opts = self._options(req, default_tokens=256)
        ids = self.lm.encode_prompt([m.model_dump() for m in req.messages])
        self._check_prompt_len(len(ids), opts.max_tokens)
        new, text, finish = await self._generate(ids, opts)
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return self._wrap("chat.completion", choice, len(ids), len(new))

    async def load_weights(self, req: WeightsRequest) -> dict[str, Any]:
        """Read, check and copy in the weights of ``req.path`` on the model thread, between generations.

        A reload answered 504 (request_timeout_s) never happens later: the job, still queued or still reading,
        finds itself abandoned before it copies anything. One whose copy has begun is waited for and answered."""
        assert self.batcher is not None
        job = _ReloadJob()
        work = asyncio.ensure_future(self.batcher.run_on_model(self._replace_weights, req.path, job))
        try:
            count = await asyncio.shield(work)
        except asyncio.CancelledError:  # the route's timeout (or shutdown) cancelled this wait, not the job
            with job.lock:
                job.abandoned = not job.copying
            if job.abandoned:
                work.add_done_callback(lambda done: done.cancelled() or done.exception())  # a late refusal: unread
                raise
            count = await work  # the copy is under way (in memory, quick): it is what the client gets
        return {"object": "weights", "path": req.path, "tensors": count}

    @torch.no_grad()
    def _replace_weights(self, path: str, job: _ReloadJob) -> int:
        params = dict(self.lm.model.named_parameters())
        served_dir = Path(self.config.model) if Path(self.config.model).is_dir() else None
        tensors = read_weights(path, params, self.lm.model.config.to_dict(), served_dir)  # every check first
        with job.lock:  # past this point the load happens whatever the client's wait does
            if job.abandoned:
                return 0
            job.copying = True
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
        return len(tensors)

    def _wrap(self, kind: str, choice: dict[str, Any], n_prompt: int, n_new: int) -> dict[str, Any]:
        return {
            "id": f"alignlab-{time.time_ns()}",
            "object": kind,
            "created": int(time.time()),
            "model": self.name,
            "choices": [choice],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_new, "total_tokens": n_prompt + n_new},
        }


@dataclass
class _ReloadJob:
    """One weight reload's state, shared by the waiting route and the model thread (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    abandoned: bool = False  # the route stopped waiting (504) before the copy began: change nothing
    copying: bool = False  # the copy began: the route waits for it


# config.json keys that name, store or document a model without changing what it computes
_BOOKKEEPING_KEYS = {"_name_or_path", "torch_dtype", "dtype", "transformers_version", "use_cache", "_commit_hash"}
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model", "special_tokens_map.json")


def read_weights(path: str, params: dict[str, torch.Tensor], served_config: dict[str, Any] | None = None,
                 served_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """The safetensors tensors of directory ``path`` that replace ``params`` (the served model's named
    parameters). Names and shapes are checked from the files' headers before any tensor is read: every parameter
    must be there with its shape, and a file tensor that is no parameter is an error (another architecture).
    The directory's ``config.json`` must compute what ``served_config`` computes, and its tokenizer files must
    equal those of ``served_dir`` (each only where both have it). Any refusal is :class:`BadRequest`."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    root = Path(path)
    files = sorted(root.glob("*.safetensors")) if root.is_dir() else []
    if not files:
        raise BadRequest(f"'{path}' is not a directory holding *.safetensors weights on the server's machine")
    try:
        shapes: dict[str, list[int]] = {}
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                shapes.update({name: list(f.get_slice(name).get_shape()) for name in f.keys()})  # noqa: SIM118 (no __iter__)
        _check_names_and_shapes(path, shapes, params)
        if served_config is not None:
            _check_config(root, served_config)
        if served_dir is not None:
            _check_tokenizer(root, served_dir)
        tensors: dict[str, torch.Tensor] = {}
        for file in files:
            tensors.update(load_file(str(file)))
    except (SafetensorError, OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"cannot read the weights in '{path}': {type(err).__name__}: {err}") from err
    return {name: tensor.to(params[name].dtype) for name, tensor in tensors.items()}


def _check_names_and_shapes(path: str, shapes: dict[str, list[int]], params: dict[str, torch.Tensor]) -> None:
    unknown = sorted(set(shapes) - set(params))
    missing = sorted(set(params) - set(shapes))
    if unknown or missing:
        raise BadRequest(f"the weights in '{path}' are not the served model's: "
                         + (f"unknown tensor '{unknown[0]}'" if unknown else f"no tensor '{missing[0]}'"))
    for name, param in params.items():
        if shapes[name] != list(param.shape):
            raise BadRequest(f"the weights in '{path}' are not the served model's: '{name}' has shape "
                             f"{shapes[name]}, the served model {list(param.shape)}")


def _computation(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without bookkeeping keys (architectures as a set): what two configs must share to compute alike."""
    kept = {k: v for k, v in config.items() if k not in _BOOKKEEPING_KEYS and not k.startswith("_")}
    if kept.get("architectures"):
        kept["architectures"] = sorted(kept["architectures"])
    return kept


def _check_config(root: Path, served_config: dict[str, Any]) -> None:
    """Refuse a directory whose config.json differs from the served model's in a key that changes the computation
    (rope settings, norm eps, ...). The file is read through transformers so that defaults compare as values."""
    if not (root / "config.json").is_file():
        return
    from transformers import AutoConfig

    try:
        pushed = _computation(AutoConfig.from_pretrained(str(root)).to_dict())
    except (ValueError, KeyError) as err:
        raise BadRequest(f"cannot read '{root / 'config.json'}': {err}") from err
    served = _computation(served_config)
    differ = sorted(k for k in set(pushed) | set(served) if pushed.get(k) != served.get(k))
    if differ:
        key = differ[0]
        raise BadRequest(f"the weights in '{root}' are not the served model's: config.json has {key}="
                         f"{pushed.get(key)!r}, the served model {served.get(key)!r}"
                         + (f" (and {len(differ) - 1} more differing keys)" if len(differ) > 1 else ""))


def _check_tokenizer(root: Path, served_dir: Path) -> None:
    """Refuse a directory whose tokenizer files differ from the served model's: the server keeps its tokenizer."""
    for name in _TOKENIZER_FILES:
        pushed_file, served_file = root / name, served_dir / name
        if not (pushed_file.is_file() and served_file.is_file()):
            continue
        if name.endswith(".json"):  # the same content however it was formatted
            same = json.loads(pushed_file.read_text("utf-8")) == json.loads(served_file.read_text("utf-8"))
        else:
            same = pushed_file.read_bytes() == served_file.read_bytes()
        if not same:
            raise BadRequest(f"the weights in '{root}' are not the served model's: its {name} differs from the "
                             f"served model's (the server keeps its own tokenizer)")


# ---- HTTP --------------------------------------------------------------------------------------------
def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 504: "timeout"}.get(status, "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status, headers=headers)


def _host_name(header: str) -> str:
    """``example.org:8000`` → ``example.org``; ``[::1]:8000`` → ``::1``."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware in front of the app: Host check, API key, and a body read whole under a size and time limit.

    A body over the limit is answered 413 with ``Connection: close``: the server stops reading and drops the
    connection, so the unread rest can never be parsed as a next request.
    """

    def __init__(self, app: Any, config: ServeConfig, api_key: str | None):
        self.app, self.config, self.api_key = app, config, api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(headers)
        if refusal is None:
            body, refusal = await self._read_body(headers, receive)
        if refusal is not None:
            return await refusal(scope, receive, send)
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if delivered:
                return await receive()  # http.disconnect
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _refusal(self, headers: dict[str, str]) -> JSONResponse | None:
        allowed = self.config.allowed_hosts
        if "*" not in allowed and _host_name(headers.get("host", "")) not in allowed:
            return _error(400, "Host header not allowed (see allowed_hosts)")
        if self.api_key is not None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self.api_key.encode()):
                return _error(401, "missing or wrong API key (send 'Authorization: Bearer KEY')")
        declared = headers.get("content-length")
        if declared is not None and int(declared) > self.config.max_body_bytes:  # h11 has checked it is a number
            return self._too_large()
        return None

    def _too_large(self) -> JSONResponse:
        return _error(413, f"body larger than {self.config.max_body_bytes} bytes", {"Connection": "close"})

    async def _read_body(self, headers: dict[str, str], receive: Any) -> tuple[bytes, JSONResponse | None]:
        chunks, size = [], 0

        async def read_all() -> bool:
            nonlocal size
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return False
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.config.max_body_bytes:
                    return False
                if not message.get("more_body", False):
                    return True

        try:
            complete = await asyncio.wait_for(read_all(), self.config.body_timeout_s)
        except TimeoutError:
            return b"", _error(408, f"the body did not arrive within {self.config.body_timeout_s} s",
                               {"Connection": "close"})
        if not complete:
            return b"", self._too_large()
        return b"".join(chunks), None


def build_app(lm: HuggingFaceLM, config: ServeConfig) -> FastAPI:
    """The ASGI app for ``config`` over ``lm`` (routes, error shapes, limits); :func:`make_server` runs it."""
    logic = ModelServer(lm, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        logic.batcher = Batcher(lm, config.max_batch_size)
        worker = asyncio.create_task(logic.batcher.work())
        yield
        worker.cancel()
        logic.batcher.model_thread.shutdown(wait=False, cancel_futures=True)

    api_key = config.api_key or os.environ.get(API_KEY_ENV) or None
    if config.allow_weight_reload and api_key is None:
        raise EvalError("allow_weight_reload needs an api_key (or the ALIGNLAB_API_KEY environment variable): "
                        "without one, anyone who reaches the server could replace its weights")
    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.logic = logic
    app.add_middleware(Guard, config=config, api_key=api_key)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in err.errors())
        return _error(400, problems or "invalid request body")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail) + f" ({request.method} {request.url.path})", err.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:  # never leave a client hanging on a bug
        return _error(500, f"{type(err).__name__}: {err}")

    async def answer(work: Any) -> JSONResponse:
        try:
            return JSONResponse(await asyncio.wait_for(work, config.request_timeout_s))
        except (BadRequest, EvalError) as err:
            return _error(400, str(err))
        except TimeoutError:
            return _error(504, f"no answer within request_timeout_s={config.request_timeout_s}")

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse(logic.models())

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> JSONResponse:
        return await answer(logic.completions(req))

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> JSONResponse:
        return await answer(logic.chat(req))

    if config.allow_weight_reload:  # otherwise the route does not exist (404)

        @app.post("/v1/alignlab/weights")
        async def weights(req: WeightsRequest) -> JSONResponse:
            return await answer(logic.load_weights(req))

    return app


def _protocol(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, plus a deadline for a new connection's first request (uvicorn has none)."""

    class DeadlineProtocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.loop.call_later(header_timeout_s, self._drop_if_silent)

        def _drop_if_silent(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

    return DeadlineProtocol


class Server:
    """A bound, ready-to-run server. ``port=0`` picks a free port: read :attr:`url`.

    Example::

        >>> srv = make_server(HuggingFaceLM("runs/sft"), ServeConfig(model="runs/sft", port=0))  # doctest: +SKIP
        >>> srv.start()            # in a background thread                                       # doctest: +SKIP
        >>> srv.url, srv.stop()                                                                   # doctest: +SKIP
    """

    def __init__(self, app: FastAPI, config: ServeConfig, sock: socket.socket):
        self.app, self.config, self.sock = app, config, sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"
        self.uvicorn = uvicorn.Server(uvicorn.Config(
            app, http=_protocol(config.header_timeout_s), limit_concurrency=config.max_connections,
            timeout_keep_alive=config.keep_alive_timeout_s, log_level="warning", access_log=False,
            lifespan="on", log_config=None))
        self.thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C)."""
        self.uvicorn.run(sockets=[self.sock])

    def start(self) -> str:
        """Serve in a background thread; returns once the server accepts requests."""
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()
        while not self.uvicorn.started:
            if not self.thread.is_alive():
                raise EvalError("the server stopped while starting")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.sock.close()


def make_server(lm: HuggingFaceLM, config: ServeConfig) -> Server:
    """Bind ``config.host:config.port`` (refusing a public address, a port in use) and build the app over ``lm``."""
    return Server(build_app(lm, config), config, bind(config))


def bind(config: ServeConfig) -> socket.socket:
    """A listening socket on ``config.host:config.port``; a public address or a port in use is an EvalError."""
    _check_host(config)
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as err:
        sock.close()
        raise EvalError(f"cannot listen on {config.host}:{config.port}: {err.strerror or err}"
                        + (" (another server uses that port; pick another with --port)"
                           if err.errno == 98 else "")) from err
    sock.listen(128)
    return sock


def serve(config: ServeConfig, **old_keywords: Any) -> None:
    """Load ``config.model`` and serve it until interrupted.

    The call before configs, ``serve(model, host=..., port=..., ...)``, still works for one release, with a
    DeprecationWarning.
    """
    if not isinstance(config, ServeConfig):
        warnings.warn("serve(model, ...) is deprecated: pass a ServeConfig (serve(ServeConfig(model=...)))",
                      DeprecationWarning, stacklevel=2)
        config = ServeConfig(model=config, **old_keywords)
    sock = bind(config)  # before the model loads: a port in use fails at once
    server = Server(build_app(HuggingFaceLM(config.model, dtype=config.dtype), config), config, sock)
    print(f"serving {config.model} on {server.url} (Ctrl-C to stop)", flush=True)
    server.serve_forever()
