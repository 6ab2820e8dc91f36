"""The OpenAI-compatible backend against a scripted fake server: retries with backoff on 5xx and
garbage, immediate errors on 4xx, the on-disk cache, the concurrency limit, chat-only limits."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alignlab.errors import EvalError
from alignlab.evaluate.http_lm import OpenAILM


class Script:
    """Replies popped in order; each is (status, body) where body is a dict (JSON) or raw bytes."""

    def __init__(self, replies, delay=0.0):
        self.replies, self.delay = list(replies), delay
        self.requests, self.active, self.max_active = [], 0, 0
        self.lock = threading.Lock()


def serve(script):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.requests.append((self.path, body))
                script.active += 1
                script.max_active = max(script.max_active, script.active)
                status, reply = script.replies.pop(0) if script.replies else (200, _text("default"))
            time.sleep(script.delay)
            data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            with script.lock:
                script.active -= 1
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def _text(text):
    return {"choices": [{"text": text, "message": {"role": "assistant", "content": text}}]}


@pytest.fixture
def fake():
    servers = []

    def start(replies, delay=0.0):
        script = Script(replies, delay)
        httpd, url = serve(script)
        servers.append(httpd)
        return script, url

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_retries_then_succeeds(fake):
    script, url = fake([(500, b"oops"), (200, b"not json{"), (503, {"error": "busy"}), (200, _text("hello"))])
    lm = OpenAILM(url, max_retries=4, backoff=0.001)
    assert lm.generate(["Hi"], max_tokens=5, stop=["llo"]) == ["he"]
    assert len(script.requests) == 4
    path, body = script.requests[-1]
    assert path == "/v1/completions" and body["prompt"] == "Hi" and body["max_tokens"] == 5


def test_gives_up_with_clear_error(fake):
    script, url = fake([(500, b"down")] * 3)
    with pytest.raises(EvalError, match="after 3 attempts.*HTTP 500"):
        OpenAILM(url, max_retries=2, backoff=0.001).generate(["Hi"])
    script, url = fake([(400, {"error": {"message": "bad max_tokens"}}), (200, _text("never reached"))])
    with pytest.raises(EvalError, match="HTTP 400.*bad max_tokens"):
        OpenAILM(url, max_retries=5, backoff=0.001).generate(["Hi"])
    assert len(script.requests) == 1  # a client error is not retried
    script, url = fake([(200, {"choices": [{"message": {"content": 3}}]})])
    with pytest.raises(EvalError, match="not a string"):
        OpenAILM(url, kind="chat").generate(["Hi"])


def test_timeout_is_an_error_not_a_hang(fake):
    script, url = fake([(200, _text("late"))] * 2, delay=0.3)
    lm = OpenAILM(url, timeout=0.1, max_retries=1, backoff=0.001)
    with pytest.raises(EvalError, match="after 2 attempts.*timed out"):
        lm.generate(["Hi"])
    assert len(script.requests) == 2


def test_cache_and_concurrency(fake, tmp_path):
    script, url = fake([], delay=0.05)
    lm = OpenAILM(url, kind="chat", max_concurrency=2, cache_dir=tmp_path)
    prompts = [f"q{i}" for i in range(6)]
    assert lm.generate(prompts, max_tokens=3) == ["default"] * 6
    assert script.max_active <= 2 and len(script.requests) == 6
    assert lm.generate(prompts, max_tokens=3) == ["default"] * 6
    assert len(script.requests) == 6  # all six answered from the cache
    lm.generate(prompts[:1], max_tokens=3, temperature=1.0, seed=1)
    assert len(script.requests) == 7  # a different request body is a different cache key
    assert [{"role": "user", "content": "q0"}] in [body["messages"] for _, body in script.requests]


def test_chat_endpoint_cannot_score(fake):
    _, url = fake([])
    with pytest.raises(EvalError, match="local model or a completions endpoint"):
        OpenAILM(url, kind="chat").loglikelihood([("Q:", " A")])
    with pytest.raises(EvalError, match="unknown endpoint kind"):
        OpenAILM(url, kind="embeddings")
