"""``alignlab serve``: an OpenAI-compatible HTTP server over a local model (standard library only).

Endpoints: ``GET /v1/models``, ``POST /v1/completions`` (a string or token-id prompt; ``echo`` +
``logprobs`` return the prompt's own token log-probs, so log-likelihood tasks work through the server)
and ``POST /v1/chat/completions`` (rendered with the tokenizer's chat template). Bodies are validated
and a bad one gets HTTP 400 with ``{"error": {"message": ...}}``; ``max_tokens`` and prompt length are
capped. It binds loopback addresses only: it is for evaluating and judging on one machine, not for
exposure to a network. Requests are served by threads but the model runs one request at a time.

Example::

    $ alignlab serve --model runs/sft --port 8000
    >>> from alignlab.evaluate.http_lm import OpenAILM
    >>> OpenAILM("http://127.0.0.1:8000/v1").generate(["Hello"], max_tokens=8)   # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import warnings
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import torch

from alignlab.errors import EvalError
from alignlab.evaluate.lm import HuggingFaceLM, cut_at_stop

MAX_BODY_BYTES = 1 << 20


class BadRequest(Exception):
    """A request body the server refuses (answered with HTTP 400)."""


def _check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise EvalError(f"alignlab serve binds loopback addresses only (127.0.0.1, ::1), not '{host}'")


def _get(
    body: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    default: Any = None,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) and kind is not bool:
        raise BadRequest(f"'{key}' must be {getattr(kind, '__name__', kind)}, got a boolean")
    if not isinstance(value, kind):
        raise BadRequest(f"'{key}' has the wrong type ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadRequest(f"'{key}' must be between {low} and {high}, got {value}")
    return value


def _stop_list(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
        raise BadRequest("'stop' must be a string or a list of at most 4 strings")
    return stop


class ModelServer:
    """The request logic, separate from HTTP so it reads top to bottom and can be called directly."""

    def __init__(
        self,
        lm: HuggingFaceLM,
        *,
        name: str = "alignlab",
        max_tokens_cap: int = 512,
        max_prompt_tokens: int | None = None,
    ):
        self.lm, self.name, self.max_tokens_cap = lm, name, max_tokens_cap
        self.max_prompt_tokens = min(max_prompt_tokens or lm.max_length, lm.max_length)
        self.lock = threading.Lock()  # one forward at a time: torch already uses every core

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "alignlab"}]}

    def _sampling(self, body: dict[str, Any], default_tokens: int) -> dict[str, Any]:
        if _get(body, "n", int, 1) != 1:
            raise BadRequest("only n=1 is supported")
        return {
            "max_tokens": _get(body, "max_tokens", int, default_tokens, 0, self.max_tokens_cap),
            "temperature": float(_get(body, "temperature", (int, float), 0.0, 0.0, 2.0)),
            "top_p": float(_get(body, "top_p", (int, float), 1.0, 0.0, 1.0)),
            "seed": _get(body, "seed", int, 0),
            "stop": _stop_list(body),
        }

    def _check_prompt_len(self, ids: list[int], max_tokens: int) -> None:
        if not ids:
            raise BadRequest("the prompt is empty")
        if len(ids) + max_tokens > self.max_prompt_tokens:
            raise BadRequest(
                f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                f"{self.max_prompt_tokens}-token limit"
            )

    def _generate(self, ids: list[int], opts: dict[str, Any]) -> tuple[list[int], str, str]:
        if opts["max_tokens"] == 0:
            return [], "", "length"
        new = self.lm.generate_ids(
            [ids],
            stop=opts["stop"],
            max_tokens=opts["max_tokens"],
            temperature=opts["temperature"],
            top_p=opts["top_p"],
            seed=opts["seed"],
        )[0]
        raw = self.lm.tokenizer.decode(new, skip_special_tokens=True)
        text = cut_at_stop(raw, opts["stop"])
        finish = "length" if len(new) >= opts["max_tokens"] and text == raw else "stop"
        return new, text, finish

    @torch.no_grad()
    def _token_logprobs(
        self, ids: list[int], top: int
    ) -> tuple[list[float | None], list[dict[str, float] | None]]:
        """log p(x_i | x_<i) of every token (None for the first) and the ``top`` most likely alternatives."""
        logits = self.lm.model(input_ids=torch.tensor([ids], device=self.lm.device), use_cache=False).logits[
            0
        ]
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

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        opts = self._sampling(body, default_tokens=16)
        tok = self.lm.tokenizer
        if isinstance(prompt, str):
            enc = tok(prompt, return_offsets_mapping=True)
            ids, offsets = enc["input_ids"], [start for start, _ in enc["offset_mapping"]]
            prompt_text = prompt
        elif (
            isinstance(prompt, list)
            and prompt
            and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
        ):
            if max(prompt) >= len(tok) or min(prompt) < 0:
                raise BadRequest("a token id in 'prompt' is outside the vocabulary")
            ids = list(prompt)
            offsets = [len(tok.decode(ids[:i])) for i in range(len(ids))]
            prompt_text = tok.decode(ids)
        else:
            raise BadRequest("'prompt' must be a non-empty string or a list of token ids")
        echo = _get(body, "echo", bool, False)
        top = _get(body, "logprobs", int, None, 0, 5)
        self._check_prompt_len(ids, opts["max_tokens"])
        with self.lock:
            new, text, finish = self._generate(ids, opts)
            logprobs = None
            if top is not None:
                every = ids + new
                token_lp, tops = self._token_logprobs(every, top)
                offsets = offsets + [len(prompt_text) + len(tok.decode(new[:i])) for i in range(len(new))]
                keep = range(0 if echo else len(ids), len(every))
                logprobs = {
                    "tokens": [tok.decode([every[i]]) for i in keep],
                    "token_logprobs": [token_lp[i] for i in keep],
                    "top_logprobs": [tops[i] for i in keep] if top else None,
                    "text_offset": [offsets[i] for i in keep],
                }
        choice = {
            "index": 0,
            "text": (prompt_text if echo else "") + text,
            "finish_reason": finish,
            "logprobs": logprobs,
        }
        return self._wrap("text_completion", choice, len(ids), len(new))

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict)
                and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str)
                for m in messages
            )
        ):
            raise BadRequest(
                "'messages' must be a non-empty list of {role: system|user|assistant, content: str}"
            )
        opts = self._sampling(body, default_tokens=256)
        ids = self.lm.encode_prompt([{"role": m["role"], "content": m["content"]} for m in messages])
        self._check_prompt_len(ids, opts["max_tokens"])
        with self.lock:
            new, text, finish = self._generate(ids, opts)
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return self._wrap("chat.completion", choice, len(ids), len(new))

    def _wrap(self, kind: str, choice: dict[str, Any], n_prompt: int, n_new: int) -> dict[str, Any]:
        return {
            "id": f"alignlab-{time.time_ns()}",
            "object": kind,
            "created": int(time.time()),
            "model": self.name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": n_new,
                "total_tokens": n_prompt + n_new,
            },
        }


def make_handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    """An HTTP handler class bound to ``server``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output and terminals quiet
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, server.models())
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            routes = {"/v1/completions": server.completions, "/v1/chat/completions": server.chat}
            route = routes.get(self.path.rstrip("/"))
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._error(413, f"body larger than {MAX_BODY_BYTES} bytes")
                return
            raw = self.rfile.read(length)
            if route is None:
                self._error(404, f"no route {self.path}")
                return
            try:
                body = json.loads(raw or b"null")
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                self._send(200, route(body))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                self._error(400, f"the body is not valid JSON: {err}")
            except (BadRequest, EvalError) as err:
                self._error(400, str(err))
            except Exception as err:  # never leave the client hanging on a bug
                self._error(500, f"{type(err).__name__}: {err}")

    return Handler


def make_server(
    lm: HuggingFaceLM,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    name: str = "alignlab",
    max_tokens_cap: int = 512,
    max_prompt_tokens: int | None = None,
) -> ThreadingHTTPServer:
    """A ready-to-run server (``port=0`` picks a free port: read ``server.server_address``).

    Example::

        >>> srv = make_server(HuggingFaceLM("runs/sft"), port=0)            # doctest: +SKIP
        >>> threading.Thread(target=srv.serve_forever, daemon=True).start()  # doctest: +SKIP
    """
    _check_loopback(host)
    logic = ModelServer(lm, name=name, max_tokens_cap=max_tokens_cap, max_prompt_tokens=max_prompt_tokens)
    httpd = ThreadingHTTPServer((host, port), make_handler(logic))
    httpd.daemon_threads = True
    return httpd


@dataclass
class ServeConfig:
    """An OpenAI-compatible HTTP server over a local model (loopback addresses only)."""

    model: str
    """model dir, run dir or hub name"""
    port: int = 8000
    """TCP port (0: any free port)"""
    host: str = "127.0.0.1"
    """a loopback address"""
    name: str | None = None
    """model name reported by /v1/models (null: the model path)"""
    max_tokens_cap: int = 512
    """largest max_tokens a request may ask for"""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """weights dtype"""


def serve(config: ServeConfig, **old_keywords: Any) -> None:
    """Load ``config.model`` and serve it until interrupted.

    The call before configs, ``serve(model, host=..., port=..., ...)``, still works for one release, with a
    DeprecationWarning.
    """
    if not isinstance(config, ServeConfig):
        warnings.warn("serve(model, ...) is deprecated: pass a ServeConfig (serve(ServeConfig(model=...)))",
                      DeprecationWarning, stacklevel=2)
        config = ServeConfig(model=config, **old_keywords)
    _check_loopback(config.host)
    httpd = make_server(
        HuggingFaceLM(config.model, dtype=config.dtype),
        host=config.host,
        port=config.port,
        name=config.name or config.model,
        max_tokens_cap=config.max_tokens_cap,
    )
    print(f"serving {config.model} on http://{config.host}:{httpd.server_address[1]}/v1 (Ctrl-C to stop)")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
