"""Hostile and careless requests to `alignlab serve`, over raw sockets on 127.0.0.1: each gets a JSON answer
(or a clean close) and the server still serves afterwards."""

import json
import socket
import threading
import time

import pytest
import torch

from alignlab.cli import main
from alignlab.evaluate.fixtures import build_tiny_lm
from alignlab.evaluate.lm import HuggingFaceLM
from alignlab.evaluate.serve import ServeConfig, make_server

TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "Hello there, friend. How are you?"] * 20
LIMITS = dict(max_tokens_cap=16, max_body_bytes=10_000, body_timeout_s=1.0, header_timeout_s=1.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    path = build_tiny_lm(tmp_path_factory.mktemp("tiny"), TEXTS, vocab_size=300, hidden_size=32, layers=1)
    return path, HuggingFaceLM(path, batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def server(tiny):
    path, lm = tiny
    srv = make_server(lm, ServeConfig(model=path, port=0, name="tiny", **LIMITS))
    srv.start()
    yield srv
    srv.stop()


def raw(server, data: bytes, *, read_timeout: float = 5.0, pause_after: float = 0.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it or goes quiet."""
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as conn:
        conn.sendall(data)
        time.sleep(pause_after)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def request(method: str, path: str, body: bytes = b"", *, host: str = "127.0.0.1", extra: str = "",
            close: bool = True) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def responses(data: bytes) -> list[tuple[int, dict | None]]:
    """Every (status, JSON body) in a byte stream of HTTP/1.1 responses."""
    out = []
    while data.startswith(b"HTTP/1.1 "):
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        body, data = rest[:length], rest[length:]
        try:
            out.append((status, json.loads(body)))
        except ValueError:
            out.append((status, None))
    return out


def still_serves(server) -> None:
    [(status, reply)] = responses(raw(server, request("GET", "/v1/models")))
    assert status == 200 and reply["data"][0]["id"] == "tiny"


def completion(server, body, **kw) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    [answer] = responses(raw(server, request("POST", "/v1/completions", data, **kw)))
    return answer


def test_an_oversized_body_is_refused_and_its_rest_never_runs_as_a_request(server):
    smuggled = request("GET", "/v1/nowhere-smuggled", close=False)
    body = b'{"prompt": "' + b"x" * 12_000 + b'"}' + smuggled * 10
    answers = responses(raw(server, request("POST", "/v1/completions", body, close=False)))
    assert [status for status, _ in answers] == [413]  # one answer, then the connection is closed
    assert "larger than 10000" in answers[0][1]["error"]["message"]
    chunked = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n" % 4000 + b"y" * 4000 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n" + smuggled)
    assert [status for status, _ in responses(raw(server, chunked))] == [413]
    still_serves(server)


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "99999999999999999999999"])
def test_bad_content_length_is_refused_without_hanging(server, length):
    start = time.perf_counter()
    data = raw(server, f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n{{}}".encode())
    assert data.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")) and time.perf_counter() - start < 4
    still_serves(server)


def test_stalled_body_and_silent_connection_time_out(server):
    start = time.perf_counter()
    stalled = raw(server, request("POST", "/v1/completions", b'{"prompt"', close=False).replace(
        b"Content-Length: 9", b"Content-Length: 100"))
    assert responses(stalled)[0][0] == 408 and time.perf_counter() - start < 4
    start = time.perf_counter()
    assert raw(server, b"") == b"" and time.perf_counter() - start < 4  # closed after header_timeout_s
    still_serves(server)


def test_a_huge_token_id_prompt_is_refused_before_it_is_decoded(tiny):
    path, lm = tiny
    srv = make_server(lm, ServeConfig(model=path, port=0, name="tiny"))  # the default 1 MiB body limit
    srv.start()
    try:
        start = time.perf_counter()
        status, reply = completion(srv, {"prompt": [5] * 12_000, "max_tokens": 1, "logprobs": 1})
        assert status == 400 and "limit" in reply["error"]["message"]
        assert time.perf_counter() - start < 2  # decoding first costs time quadratic in the length (many seconds)
        status, reply = completion(srv, {"prompt": [10**9], "max_tokens": 1})
        assert status == 400 and "vocabulary" in reply["error"]["message"]
        still_serves(srv)
    finally:
        srv.stop()


@pytest.mark.parametrize("body", [
    b'{"prompt": "hi", "temperature": NaN}',
    b'{"prompt": "hi", "top_p": NaN}',
    b'{"prompt": "hi", "temperature": Infinity}',
    b'{"prompt": "hi", "seed": 1000000000000000000000000000000}',
    b'{"prompt": "hi", "seed": -1}',
    b'{"prompt": "hi", "max_tokens": true}',
    b'{"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}',
    b'{"prompt": "\xff\xfe"}',
    b'',
])
def test_invalid_values_get_400(server, body):
    status, reply = completion(server, body)
    assert status == 400 and reply["error"]["message"], body
    still_serves(server)


def test_unknown_routes_and_methods_get_json(server):
    for method, path, expected in [("PUT", "/v1/completions", 405), ("DELETE", "/v1/models", 405),
                                   ("GET", "/nowhere", 404), ("GET", "/v1/completions", 405)]:
        [(status, reply)] = responses(raw(server, request(method, path)))
        assert status == expected and reply["error"]["message"], (method, path)
    still_serves(server)


def test_a_foreign_host_header_is_refused(server):
    [(status, reply)] = responses(raw(server, request("GET", "/v1/models", host="evil.example:8000")))
    assert status == 400 and "Host" in reply["error"]["message"]
    [(status, _)] = responses(raw(server, request("GET", "/v1/models", host="localhost:1234")))
    assert status == 200


def test_api_key_is_checked_on_every_route(tiny, monkeypatch):
    path, lm = tiny
    monkeypatch.setenv("ALIGNLAB_API_KEY", "s3cret")
    srv = make_server(lm, ServeConfig(model=path, port=0, name="tiny", **LIMITS))
    srv.start()
    try:
        body = json.dumps({"prompt": "The cat", "max_tokens": 2}).encode()
        for auth in ["", "Authorization: Bearer wrong\r\n", "Authorization: s3cret\r\n"]:
            for method, route, data in [("GET", "/v1/models", b""), ("POST", "/v1/completions", body),
                                        ("POST", "/v1/chat/completions", b"{}"), ("GET", "/nowhere", b"")]:
                [(status, reply)] = responses(raw(srv, request(method, route, data, extra=auth)))
                assert status == 401 and "API key" in reply["error"]["message"], (auth, route)
        ok = "Authorization: Bearer s3cret\r\n"
        assert responses(raw(srv, request("POST", "/v1/completions", body, extra=ok)))[0][0] == 200
    finally:
        srv.stop()


def test_concurrent_greedy_requests_share_a_batch_and_get_their_own_answers(tiny):
    path, lm = tiny
    srv = make_server(lm, ServeConfig(model=path, port=0, name="tiny", max_batch_size=8, **LIMITS))
    srv.start()
    prompts = ["The cat", "A dog ran", "Hello there, friend.", "The mat"] * 4
    answers: dict[int, tuple[int, dict]] = {}
    try:
        def ask(i: int) -> None:
            answers[i] = completion(srv, {"prompt": prompts[i], "max_tokens": 6})

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        batches = srv.app.state.logic.batcher.batches
    finally:
        srv.stop()
    alone = lm.generate(prompts, max_tokens=6)
    assert [answers[i][1]["choices"][0]["text"] for i in range(len(prompts))] == alone
    assert max(batches) > 1 and sum(batches) == len(prompts)


def test_request_timeout_gives_504_and_the_server_recovers(tiny):
    path, lm = tiny
    srv = make_server(lm, ServeConfig(model=path, port=0, name="tiny", request_timeout_s=1e-4, **LIMITS))
    srv.start()
    try:
        status, reply = completion(srv, {"prompt": "The cat", "max_tokens": 16})
        assert status == 504 and "request_timeout_s" in reply["error"]["message"]
        still_serves(srv)
    finally:
        srv.stop()


def test_serve_on_a_port_in_use_is_a_one_line_error(tiny, capsys):
    path, _ = tiny
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--model", path, "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("alignlab: error: cannot listen on 127.0.0.1:") and "Traceback" not in "".join(err)


def test_connections_over_the_limit_get_503_and_the_server_recovers(tiny):
    path, lm = tiny
    srv = make_server(lm, ServeConfig(model=path, port=0, name="tiny", max_connections=2, **LIMITS))
    srv.start()
    port = int(srv.url.rsplit(":", 1)[1].split("/")[0])
    try:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        time.sleep(0.2)
        [(status, reply)] = responses(raw(srv, request("GET", "/v1/models")))
        assert status == 503
        for conn in held:
            conn.close()
        time.sleep(0.2)
        still_serves(srv)
    finally:
        srv.stop()
