"""An :class:`~alignlab.evaluate.lm.LM` over any OpenAI-compatible HTTP server (standard library only).

Three endpoint kinds:

- ``completions`` (``/v1/completions``): generation from strings, and log-likelihood through ``echo=true``
  with ``logprobs`` and ``max_tokens=0`` (the server scores the prompt's own tokens).
- ``chat`` (``/v1/chat/completions``): generation only; a string prompt is sent as one user message.
  Chat APIs cannot score a given text, so log-likelihood requests raise an :class:`EvalError` that says
  what to use instead.
- ``auto`` (the default): each request goes where its prompt fits: chat messages to the chat endpoint,
  strings and log-likelihoods to the completions endpoint (``alignlab serve``, vLLM and most local servers
  have both). A server with only one of them is named explicitly (``http+chat://...``, see :func:`load_lm`).

Every request is retried on connection errors, timeouts, HTTP 429/5xx and unparseable bodies with
exponential backoff (``backoff * 2**attempt`` seconds); at most ``max_concurrency`` run at once; with
``cache_dir`` each response is stored on disk under a hash of (endpoint, body), so a rerun costs
nothing. Every sampled request gets a seed of its own (:func:`request_seeds`): k samples of a prompt are k
cache entries, and different prompts never share their random numbers.

With ``tokenizer`` (the served model's), log-likelihood prompts are sent as token ids, tokenised
exactly as :class:`~alignlab.evaluate.lm.HuggingFaceLM` does, so local and served numbers match.
Without it, text is sent and the continuation is the tokens starting at or after the context's end
(``text_offset``), which is exact when the boundary falls between tokens.

Example::

    >>> lm = OpenAILM("http://127.0.0.1:8000/v1", model="tiny", kind="completions")   # doctest: +SKIP
    >>> lm.generate(["Once upon a time"], max_tokens=20)                               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.core.io import atomic_write_text
from alignlab.errors import EvalError
from alignlab.evaluate.interface import LM, HarnessEncoder, Prompt, cut_at_stop

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
KINDS = ("auto", "completions", "chat")


@dataclass
class HTTPOptions:
    """How the CLI talks to a model or judge given as a URL (``http[+chat|+completions]://host:port/v1[#model]``)."""

    timeout_s: float = 60.0
    """seconds to wait for one HTTP response"""
    max_retries: int = 2
    """retries after a timeout, a refused connection, HTTP 429/5xx or an unparseable body"""
    max_concurrency: int = 4
    """requests in flight at once per server"""
    api_key_env: str = "ALIGNLAB_API_KEY"
    """environment variable holding the bearer token to send (unset: none is sent)"""

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"http.timeout_s must be positive, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"http.max_retries must be 0 or more, got {self.max_retries}")
        if self.max_concurrency < 1:
            raise ValueError(f"http.max_concurrency must be at least 1, got {self.max_concurrency}")


def open_url(spec: str, options: HTTPOptions | None = None) -> OpenAILM:
    """An :class:`OpenAILM` from ``http[s][+chat|+completions]://host:port/v1[#model]`` (plain: kind auto).

    Example::

        >>> open_url("http+chat://127.0.0.1:8000/v1#judge").kind
        'chat'
    """
    options = options or HTTPOptions()
    scheme, sep, rest = spec.partition("://")
    transport, _, kind = scheme.partition("+")
    if not sep or transport not in ("http", "https") or kind not in ("", *KINDS[1:]):
        raise EvalError(f"'{spec}' is not a server URL; use http[s]://, http+chat:// or http+completions://")
    base_url, _, model = f"{transport}://{rest}".partition("#")
    return OpenAILM(base_url, model=model or "default", kind=kind or "auto",
                    api_key=os.environ.get(options.api_key_env) or None, timeout=options.timeout_s,
                    max_retries=options.max_retries, max_concurrency=options.max_concurrency)


class OpenAILM(LM):
    """An OpenAI-compatible server (``kind`` = ``auto``, ``completions`` or ``chat``).

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the ``model`` field sent with each request.
        api_key: sent as a bearer token when given.
        max_concurrency: requests in flight at once.
        timeout: seconds per HTTP request.
        max_retries: retries after the first attempt, for transient failures only.
        backoff: first retry delay in seconds; doubles each retry.
        cache_dir: on-disk response cache (one JSON file per request), off when None.
        tokenizer: the served model's tokenizer (path or object), for exact token-level log-likelihoods.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "default",
        kind: str = "auto",
        api_key: str | None = None,
        max_concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        cache_dir: str | Path | None = None,
        tokenizer: Any = None,
    ):
        if kind not in KINDS:
            raise EvalError(f"unknown endpoint kind '{kind}'; use one of {', '.join(KINDS)}")
        self.base_url = base_url.rstrip("/")
        self.model, self.kind, self.api_key = model, kind, api_key
        self.max_concurrency, self.timeout = max_concurrency, timeout
        self.max_retries, self.backoff = max_retries, backoff
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.supports_loglikelihood = kind != "chat"
        self.encoder = None
        if tokenizer is not None:
            from alignlab.core.models import load_tokenizer

            self.encoder = HarnessEncoder(
                load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
            )

    # ---- transport ---------------------------------------------------------------------------------
    def request(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``endpoint`` (e.g. ``/completions``) with cache, retries and backoff."""
        key = hashlib.sha256(json.dumps([self.base_url, endpoint, body], sort_keys=True).encode()).hexdigest()
        cached = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if cached is not None and cached.exists():
            return json.loads(cached.read_text())
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            req = urllib.request.Request(self.base_url + endpoint, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read().decode())
                if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
                    raise ValueError("no 'choices' list in the response")
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:300]
                if err.code not in RETRY_STATUS:
                    raise EvalError(f"{self.base_url}{endpoint} answered HTTP {err.code}: {detail}") from err
                last_error = f"HTTP {err.code}: {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as err:
                last_error = f"{type(err).__name__}: {err}"  # refused, timed out, or garbage body
            else:
                if cached is not None:
                    atomic_write_text(cached, json.dumps(payload))
                return payload
        raise EvalError(
            f"{self.base_url}{endpoint} failed after {self.max_retries + 1} attempts; "
            f"last error: {last_error}"
        )

    def _map(self, fn, items: Sequence[Any]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(fn, items))

    # ---- LM interface --------------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        if self.kind == "chat":
            raise EvalError(
                "a chat endpoint cannot return prompt log-likelihoods, so log-likelihood and multiple-choice "
                "tasks need a local model or a completions endpoint that supports echo + logprobs "
                "(e.g. `alignlab serve`)"
            )
        return self._map(lambda r: self._score(*r), requests)

    def _score(self, context: str, continuation: str) -> tuple[float, bool]:
        if self.encoder is not None:
            ctx, cont = self.encoder.encode_pair(context, continuation)
            choice = self._echo(ctx + cont)
            token_logprobs, tokens = choice["token_logprobs"], choice["tokens"]
            picked = range(len(tokens) - len(cont), len(tokens))
        else:
            # As the harness does, a context's trailing spaces belong to the continuation's first token.
            choice = self._echo(context + continuation)
            boundary = len(context.rstrip())
            token_logprobs, tokens = choice["token_logprobs"], choice["tokens"]
            # The first token never has a log-prob (nothing precedes it), so it cannot be scored.
            picked = [i for i, off in enumerate(choice["text_offset"]) if off >= boundary and i > 0]
        if not picked or any(token_logprobs[i] is None for i in picked):
            raise EvalError(f"the server returned no log-probs for continuation {continuation[:40]!r}")
        top = choice.get("top_logprobs") or [None] * len(tokens)
        greedy = all(top[i] is not None and max(top[i], key=top[i].get) == tokens[i] for i in picked)
        return float(sum(token_logprobs[i] for i in picked)), greedy

    def _echo(self, prompt: str | list[int]) -> dict[str, Any]:
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": 0,
            "echo": True,
            "logprobs": 1,
            "temperature": 0.0,
        }
        try:
            return self.request("/completions", body)["choices"][0]["logprobs"]
        except (KeyError, IndexError, TypeError) as err:
            raise EvalError(
                f"{self.base_url}/completions gave no echo log-probs ({err}); the server must "
                "support echo=true with logprobs"
            ) from err

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Sum of the text's token log-probs. With a tokenizer, the ids are the harness's (the prefix
        token, then the text with the tokenizer's own BOS); without, the server's tokenisation."""
        if self.kind == "chat":
            return self.loglikelihood([("", t) for t in texts])  # raises the explanatory error

        def one(text: str) -> float:
            prompt = [self.encoder.prefix_token_id, *self.encoder.tok_encode(text)] if self.encoder else text
            return float(sum(x for x in self._echo(prompt)["token_logprobs"] if x is not None))

        return self._map(one, texts)

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        stop: Sequence[str] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> list[str]:
        def one(prompt_seed: tuple[Prompt, int]) -> str:
            prompt, request_seed = prompt_seed
            body: dict[str, Any] = {
                "model": self.model,
                "max_tokens": max_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "seed": request_seed,
            }
            if stop:
                body["stop"] = list(stop)
            if self.kind == "chat" or (self.kind == "auto" and not isinstance(prompt, str)):
                body["messages"] = (
                    [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
                )
                payload = self.request("/chat/completions", body)
                text = _field(payload, ("choices", 0, "message", "content"), self.base_url)
            else:
                if not isinstance(prompt, str):
                    raise EvalError(
                        "a completions endpoint takes string prompts; use kind 'chat' or 'auto' (an "
                        "http+chat:// or plain http:// URL) for chat messages"
                    )
                body["prompt"] = prompt
                text = _field(self.request("/completions", body), ("choices", 0, "text"), self.base_url)
            return cut_at_stop(text, stop)  # servers may include the stop string or ignore `stop`

        return self._map(one, list(zip(prompts, request_seeds(prompts, seed, temperature))))


def request_seeds(prompts: Sequence[Prompt], seed: int, temperature: float) -> list[int]:
    """The seed sent with each request of one ``generate`` call: greedy, ``seed`` (it changes nothing); sampled, a
    seed of each request's own, from a hash of (``seed``, the prompt, which repeat of it in the call this is).

    A seeded server (``alignlab serve``, vLLM) draws a request's random numbers from its seed alone, so requests
    sent one seed share their random numbers: prompts whose next-token distributions look alike then pick the same
    tokens (inverse-CDF sampling at one uniform number per step makes them near copies), and n prompts give
    about one independent sample, not n. A local batch draws fresh numbers for every row; so must the requests.
    The k-th copy of a prompt in a call is the k-th sample; a rerun sends the same seeds (and hits the cache).

    Example::

        >>> seeds = request_seeds(["a", "b", "a"], 5, 1.0)
        >>> len(set(seeds)), seeds == request_seeds(["a", "b", "a"], 5, 1.0), seeds[1] == request_seeds(["b"], 5, 1.0)[0]
        (3, True, True)
        >>> request_seeds(["a", "b"], 5, 0.0)
        [5, 5]
    """
    if temperature == 0:
        return [seed] * len(prompts)
    seen: dict[str, int] = {}
    seeds = []
    for prompt in prompts:
        key = json.dumps(prompt, sort_keys=True)
        repeat = seen[key] = seen.get(key, -1) + 1
        digest = hashlib.sha256(json.dumps([seed, key, repeat]).encode()).digest()
        seeds.append(int.from_bytes(digest[:4], "big") >> 1)  # < 2**31: fits servers that take a 32-bit seed
    return seeds


def _field(payload: dict[str, Any], path: tuple, where: str) -> str:
    node: Any = payload
    try:
        for key in path:
            node = node[key]
    except (KeyError, IndexError, TypeError) as err:
        raise EvalError(f"{where}: response has no {'.'.join(map(str, path))}") from err
    if not isinstance(node, str):
        raise EvalError(f"{where}: {'.'.join(map(str, path))} is not a string")
    return node
