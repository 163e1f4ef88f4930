#!/usr/bin/env python3
"""clattn-server with real clients on 127.0.0.1: curl and a standard-library
Python client. Checks the routes, that the vectors equal clattn-embed's and
the completions clattn-generate's, batching under 32 concurrent clients,
every error case, the API key, and the drain on SIGTERM.

usage: test_server.py TOOLS_DIR MODEL_DIR LM_DIR
Every wait is bounded; the servers are killed if anything hangs.

With CLATTN_TEST_EMBED_SHORT=1 (tools/check's Rusticl stage: llvmpipe
embeds one short text in about 2 s) the embedding load test and the
256-token texts are left to the POCL stage, which runs everything; the
rest runs on both."""
import base64
import http.client
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time

TOOLS, MODEL, LM = sys.argv[1], sys.argv[2], sys.argv[3]
SERVER = os.path.join(TOOLS, "clattn-server")
SLOW_DEVICE = os.environ.get("CLATTN_TEST_EMBED_SHORT") == "1"
checks = failures = 0


def check(cond, what):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
        print("FAILED:", what, file=sys.stderr)


class Server:
    """A clattn-server on a free port; its stderr goes to a file."""

    def __init__(self, *args):
        self.log_path = f"/tmp/clattn-test-server-{os.getpid()}-{id(self)}.log"
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen([SERVER, "--port", "0", *args], stderr=self.log,
                                     stdout=subprocess.DEVNULL)
        self.port = None
        deadline = time.time() + 120
        while time.time() < deadline and self.proc.poll() is None:
            text = open(self.log_path).read()
            if "listening on http://" in text:
                self.port = int(text.split("listening on http://")[1].split()[0].rsplit(":", 1)[1])
                break
            time.sleep(0.05)
        if self.port is None:
            self.proc.kill()
            sys.exit(f"clattn-server did not start: {open(self.log_path).read()}")

    def request(self, method, path, body=None, headers=None, timeout=120):
        """(status, headers, body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = {"Content-Type": "application/json", **(headers or {})}
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        out = (r.status, dict(r.getheaders()), r.read())
        c.close()
        return out

    def post(self, path, body, **kw):
        status, headers, data = self.request("POST", path, body, **kw)
        try:
            return status, json.loads(data), headers
        except ValueError:
            return status, data, headers

    def stop(self, timeout=60):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def log_text(self):
        return open(self.log_path).read()


def embed_cli(texts):
    out = subprocess.run([os.path.join(TOOLS, "clattn-embed"), "--model", MODEL, "-q",
                          "--output-format", "json", *texts], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["embeddings"]


def generate_cli(prompt, n, *extra):
    out = subprocess.run([os.path.join(TOOLS, "clattn-generate"), "-m", LM, "-p", prompt,
                          "-n", str(n), "-q", "--output-format", "json", *extra],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def max_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else float("inf")


def error_of(status, body, want_status, want_code):
    ok = (status == want_status and isinstance(body, dict) and "error" in body and
          body["error"].get("code") == want_code and body["error"].get("message"))
    check(ok, f"expected {want_status} {want_code}, got {status} {body}")


TEXTS = ["A man is eating food.", "Someone is having a meal.", "",
         "The quick brown fox jumps over the lazy dog " * 3, "naïve café — 東京"]


def test_embeddings(s):
    if SLOW_DEVICE:
        return test_embeddings_short(s)
    ref = embed_cli(TEXTS)
    status, body, _ = s.post("/v1/embeddings", {"input": TEXTS, "model": "x"})
    check(status == 200, f"embeddings status {status} {body}")
    got = [d["embedding"] for d in body["data"]]
    check([d["index"] for d in body["data"]] == list(range(len(TEXTS))), "indices")
    for i, (g, r) in enumerate(zip(got, ref)):
        check(max_diff(g, r) <= 1e-7, f"text {i}: server vs clattn-embed {max_diff(g, r)}")
    check(body["usage"]["prompt_tokens"] > len(TEXTS) * 2, f"usage {body['usage']}")
    check(body["object"] == "list" and body["model"] == os.path.basename(MODEL), "list/model")
    # One string; base64 gives the same floats bit for bit.
    status, one, _ = s.post("/v1/embeddings", {"input": TEXTS[0]})
    check(status == 200 and one["data"][0]["embedding"] == got[0], "one string == in a list")
    status, b64, _ = s.post("/v1/embeddings", {"input": TEXTS, "encoding_format": "base64"})
    for i in range(len(TEXTS)):
        raw = base64.b64decode(b64["data"][i]["embedding"])
        vals = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        as_f32 = list(struct.unpack(f"<{len(got[i])}f", struct.pack(f"<{len(got[i])}f", *got[i])))
        check(vals == as_f32, f"base64 text {i}: the float32 values of the JSON numbers")
    # Token ids, as clattn-tokenize gives them ([CLS] ... [SEP]).
    tok = subprocess.run([os.path.join(TOOLS, "clattn-tokenize"), "-m", MODEL, TEXTS[0]],
                         capture_output=True, text=True, timeout=60)
    ids = json.loads(tok.stdout) if tok.returncode == 0 else []
    if tok.returncode == 0 and ids:
        status, by_ids, _ = s.post("/v1/embeddings", {"input": ids})
        check(status == 200 and max_diff(by_ids["data"][0]["embedding"], got[0]) == 0,
              f"token ids == text ({status})")
        status, by_ids2, _ = s.post("/v1/embeddings", {"input": [ids, ids[:3]]})
        check(status == 200 and len(by_ids2["data"]) == 2, "array of id arrays")
    else:
        check(False, f"clattn-tokenize: {tok.stderr}")
    # Over-long text: truncated to the model's 256 tokens.
    status, long_, _ = s.post("/v1/embeddings", {"input": "word " * 2000})
    check(status == 200 and long_["usage"]["prompt_tokens"] == 256, f"truncation {status}")
    # text-embeddings-inference's /embed.
    status, tei, _ = s.post("/embed", {"inputs": TEXTS[:2]})
    check(status == 200 and max_diff(tei[0], got[0]) <= 1e-6, f"/embed normalised {status}")
    status, raw, _ = s.post("/embed", {"inputs": TEXTS[0], "normalize": False})
    norm = sum(x * x for x in raw[0]) ** 0.5
    check(status == 200 and abs(norm - 1) > 1e-3, f"/embed normalize false |v| {norm}")
    status, body, _ = s.post("/embed", {"inputs": "word " * 2000})
    error_of(status, body, 400, "input_too_long")
    status, body, _ = s.post("/embed", {"inputs": "word " * 2000, "truncate": True})
    check(status == 200, "/embed truncate true")
    return got


def test_embeddings_short(s):
    """The slow device's share: two short texts, as floats and base64, and
    as token ids, against clattn-embed."""
    ref = embed_cli(TEXTS[:2])
    status, body, _ = s.post("/v1/embeddings", {"input": TEXTS[:2]})
    got = [d["embedding"] for d in body["data"]] if status == 200 else []
    check(len(got) == 2 and all(max_diff(g, r) <= 1e-7 for g, r in zip(got, ref)),
          f"short texts vs clattn-embed ({status})")
    status, b64, _ = s.post("/v1/embeddings", {"input": TEXTS[0], "encoding_format": "base64"})
    raw = base64.b64decode(b64["data"][0]["embedding"]) if status == 200 else b""
    vals = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    check(got and vals == list(struct.unpack(f"<{len(got[0])}f",
                                             struct.pack(f"<{len(got[0])}f", *got[0]))),
          "base64 of a short text")
    return got


def test_embedding_errors(s):
    error_of(*s.post("/v1/embeddings", b"{not json")[:2], 400, "invalid_json")
    error_of(*s.post("/v1/embeddings", b"[1, 2]")[:2], 400, "invalid_json")
    error_of(*s.post("/v1/embeddings", {"inputs": "x"})[:2], 400, "invalid_input")
    error_of(*s.post("/v1/embeddings", {"input": 5})[:2], 400, "invalid_input")
    error_of(*s.post("/v1/embeddings", {"input": []})[:2], 400, "invalid_input")
    error_of(*s.post("/v1/embeddings", {"input": ["a", 3]})[:2], 400, "invalid_input")
    error_of(*s.post("/v1/embeddings", {"input": [[1, -5]]})[:2], 400, "invalid_input")
    error_of(*s.post("/v1/embeddings", {"input": [[10 ** 9]]})[:2], 400, "invalid_input")
    error_of(*s.post("/v1/embeddings", {"input": "a", "encoding_format": "int8"})[:2], 400,
             "invalid_encoding_format")
    error_of(*s.post("/v1/embeddings", {"input": "a", "dimensions": 12})[:2], 400,
             "invalid_dimensions")
    error_of(*s.post("/v1/embeddings", {"input": ["a"] * 9})[:2], 400, "too_many_inputs")
    error_of(*s.post("/v1/embeddings", b"{\"input\": \"" + b"a" * 70000 + b"\"}")[:2], 413,
             "body_too_large")
    # A chunked body has no Content-Length: it is cut off at the limit while read.
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    c.request("POST", "/v1/embeddings", body=iter([b"{\"input\": \"", b"a" * 40000,
                                                   b"a" * 40000, b"\"}"]),
              headers={"Content-Type": "application/json"}, encode_chunked=True)
    r = c.getresponse()
    error_of(r.status, json.loads(r.read()), 413, "body_too_large")
    c.close()
    error_of(*s.post("/embed", {"inputs": "a", "normalize": "yes"})[:2], 400, "invalid_type")
    status, _, body = s.request("GET", "/v2/nothing")
    error_of(status, json.loads(body), 404, "not_found")
    status, headers, body = s.request("GET", "/v1/embeddings")
    error_of(status, json.loads(body), 405, "method_not_allowed")
    check(headers.get("Allow") == "POST", f"Allow header {headers}")
    status, _, body = s.request("POST", "/health", b"{}")
    error_of(status, json.loads(body), 405, "method_not_allowed")
    # curl as a client: the error body and status come through.
    out = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}",
                          f"http://127.0.0.1:{s.port}/v1/embeddings", "-H",
                          "Content-Type: application/json", "-d", "{\"input\": 1}"],
                         capture_output=True, text=True, timeout=30)
    body, code = out.stdout.rsplit("\n", 1)
    check(code == "400" and json.loads(body)["error"]["code"] == "invalid_input", "curl 400")


def test_concurrent_embeddings(s, reference):
    """32 clients x 20 requests, each of 1-2 texts: every answer equals the
    single-request vectors, none is lost, the server stays healthy."""
    results, errors = [], []

    def client(k):
        try:
            for r in range(20):
                i, j = (k + r) % len(TEXTS), (k * 7 + r) % len(TEXTS)
                texts = [TEXTS[i]] if r % 2 else [TEXTS[i], TEXTS[j]]
                status, body, _ = s.post("/v1/embeddings", {"input": texts}, timeout=120)
                if status != 200:
                    errors.append((status, body))
                    continue
                want = [reference[i]] + ([] if r % 2 else [reference[j]])
                got = [d["embedding"] for d in body["data"]]
                results.append(all(g == w for g, w in zip(got, want)) and len(got) == len(want))
        except Exception as e:  # a lost response is a failure, not a hang
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    check(not any(t.is_alive() for t in threads), "a client hung")
    check(not errors, f"errors under load: {errors[:3]}")
    check(len(results) == 640 and all(results),
          f"{sum(results)} of {len(results)} answers equal the single-request vectors (640)")
    print(f"   640 embedding requests from 32 clients in {time.time() - t0:.1f} s")
    status, body, _ = s.post("/v1/embeddings", {"input": "still there?"})
    check(status == 200, "healthy after the load")


def collect_stream(s, body):
    """The text and finish reason of a streamed completion."""
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
    c.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    check(r.status == 200 and r.getheader("Content-Type") == "text/event-stream",
          f"stream status {r.status}")
    events = [e for e in r.read().decode().split("\n\n") if e]
    c.close()
    check(events and events[-1] == "data: [DONE]", f"stream ends with [DONE]: {events[-1:]}")
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    text = "".join(ch["choices"][0]["text"] for ch in chunks)
    return text, chunks[-1]["choices"][0]["finish_reason"] if chunks else None


def test_completions(s):
    prompt = "Once upon a time"
    ref = generate_cli(prompt, 24, "--temp", "0", "--ignore-eos")
    status, body, _ = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 24,
                                                  "temperature": 0})
    check(status == 200, f"completion status {status} {body}")
    greedy = body["choices"][0]["text"]
    # The CLI stops at eos; the server too, so compare up to the shorter.
    eos = body["choices"][0]["finish_reason"] == "stop"
    check(greedy == ref["text"] if not eos else ref["text"].startswith(greedy),
          f"greedy text {greedy!r} vs clattn-generate {ref['text']!r}")
    check(body["usage"]["prompt_tokens"] == len(ref["prompt_ids"]), "prompt_tokens")
    check(body["object"] == "text_completion" and body["id"].startswith("cmpl-"), "object/id")
    # Seeded sampling: the same draws as clattn-generate with the same settings.
    sampled_ref = generate_cli(prompt, 20, "--temp", "0.9", "--top-k", "0", "--top-p", "0.95",
                               "--min-p", "0", "-s", "7", "--ignore-eos")
    status, sampled, _ = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 20,
                                                     "temperature": 0.9, "top_p": 0.95,
                                                     "seed": 7})
    st = sampled["choices"][0]
    check(status == 200 and (st["text"] == sampled_ref["text"] or
                             (st["finish_reason"] == "stop" and
                              sampled_ref["text"].startswith(st["text"]))),
          f"seeded text {st['text']!r} vs {sampled_ref['text']!r}")
    # Token-id prompt == text prompt.
    status, by_ids, _ = s.post("/v1/completions", {"prompt": ref["prompt_ids"], "max_tokens": 24,
                                                    "temperature": 0})
    check(status == 200 and by_ids["choices"][0]["text"] == greedy, "prompt as ids")
    # Streaming gives the same text.
    text, finish = collect_stream(s, {"prompt": prompt, "max_tokens": 24, "temperature": 0})
    check(text == greedy and finish == body["choices"][0]["finish_reason"],
          f"stream {text!r} {finish} vs {greedy!r}")
    # Stop strings: the text ends before the first one (OpenAI's rule).
    if len(greedy) >= 6:
        stop = greedy[3:6]
        status, stopped, _ = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 24,
                                                         "temperature": 0, "stop": [stop]})
        want = greedy[:greedy.find(stop)]
        check(status == 200 and stopped["choices"][0]["text"] == want and
              stopped["choices"][0]["finish_reason"] == "stop",
              f"stop {stop!r}: {stopped['choices'][0]['text']!r} vs {want!r}")
        text, finish = collect_stream(s, {"prompt": prompt, "max_tokens": 24, "temperature": 0,
                                          "stop": stop})
        check(text == want and finish == "stop", f"streamed stop {text!r}")
    else:
        check(False, f"greedy text too short for the stop test: {greedy!r}")
    return greedy


def test_completion_errors(s):
    post = lambda b: s.post("/v1/completions", b)[:2]
    error_of(*post(b"{"), 400, "invalid_json")
    error_of(*post({"max_tokens": 3}), 400, "invalid_prompt")
    error_of(*post({"prompt": 3}), 400, "invalid_prompt")
    error_of(*post({"prompt": [1, 10 ** 8]}), 400, "invalid_prompt")
    error_of(*post({"prompt": "a", "max_tokens": 0}), 400, "invalid_value")
    error_of(*post({"prompt": "a", "max_tokens": "5"}), 400, "invalid_value")
    error_of(*post({"prompt": "a", "temperature": -1}), 400, "invalid_value")
    error_of(*post({"prompt": "a", "top_p": 2}), 400, "invalid_value")
    error_of(*post({"prompt": "a", "stop": [""]}), 400, "invalid_stop")
    error_of(*post({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}), 400, "invalid_stop")
    error_of(*post({"prompt": "a", "stream": "yes"}), 400, "invalid_type")
    error_of(*post({"prompt": "a", "n": 2}), 400, "unsupported")
    error_of(*post({"prompt": "a", "logprobs": 3}), 400, "unsupported")
    error_of(*post({"prompt": "word " * 600}), 400, "context_length_exceeded")
    # A prompt that fills the context leaves no room: refused, not wrapped.
    error_of(*post({"prompt": list(range(5, 5 + 256))}), 400, "context_length_exceeded")


def test_concurrent_completions(s, greedy):
    """8 clients decode together; each gets what it gets alone."""
    prompts = ["Once upon a time", "Hello", "The", "1 2 3 4"]
    solo = {}
    for p in prompts:
        status, body, _ = s.post("/v1/completions", {"prompt": p, "max_tokens": 16,
                                                      "temperature": 0})
        solo[p] = body["choices"][0]["text"]
    bad = []

    def client(k):
        for r in range(3):
            p = prompts[(k + r) % len(prompts)]
            status, body, _ = s.post("/v1/completions", {"prompt": p, "max_tokens": 16,
                                                          "temperature": 0})
            if status != 200 or body["choices"][0]["text"] != solo[p]:
                bad.append((p, status, body))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    check(not bad and not any(t.is_alive() for t in threads),
          f"batched completions differ from solo ones: {bad[:2]}")


def test_clients_leave(s, greedy):
    """Clients that hang up mid-stream cancel their jobs; the slots free up
    and the next request gets the right answer."""
    for _ in range(6):
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        c.request("POST", "/v1/completions", body=json.dumps(
            {"prompt": "Once upon a time", "max_tokens": 100, "temperature": 0, "stream": True}),
            headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read(100)
        c.sock.close()
        c.close()
    status, body, _ = s.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 24,
                                                  "temperature": 0})
    check(status == 200 and body["choices"][0]["text"] == greedy,
          f"after clients left mid-stream: {status}")
    check("connection ended early" in s.log_text(), "the log notes the early ends")


def test_auth():
    s = Server("--model", MODEL, "--api-key", "s3cret")
    try:
        status, _, body = s.request("GET", "/health")
        error_of(status, json.loads(body), 401, "invalid_api_key")
        status, _, body = s.request("GET", "/health", headers={"Authorization": "Bearer nope"})
        error_of(status, json.loads(body), 401, "invalid_api_key")
        status, _, _ = s.request("GET", "/health", headers={"Authorization": "Bearer s3cret"})
        check(status == 200, "right key")
        status, body, _ = s.post("/v1/embeddings", {"input": "x"},
                                 headers={"Authorization": "Bearer s3cret"})
        check(status == 200, "right key, embeddings")
    finally:
        check(s.stop() == 0, "auth server exit 0")


def test_queue_full():
    """One request waits 1.5 s for its batch to fill; with --max-queue 1 the
    next one is refused at once with 503 and Retry-After."""
    s = Server("--model", MODEL, "--max-queue", "1", "--max-wait-ms", "1500")
    try:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=s.post("/v1/embeddings",
                                                                  {"input": "a"})))
        t.start()
        time.sleep(0.5)
        status, body, headers = s.post("/v1/embeddings", {"input": "b"})
        error_of(status, body, 503, "queue_full")
        check(headers.get("Retry-After") == "1", f"Retry-After {headers}")
        t.join(60)
        check(first.get("r", (0,))[0] == 200, "the queued request still succeeds")
    finally:
        check(s.stop() == 0, "queue server exit 0")


def test_drain():
    """SIGTERM during a long completion: it finishes, then the server exits 0."""
    s = Server("--lm", LM)
    res = {}

    def long_request():
        res["r"] = s.post("/v1/completions", {"prompt": "Once", "max_tokens": 120,
                                              "temperature": 0, "stop": None})

    t = threading.Thread(target=long_request)
    t.start()
    time.sleep(0.3)
    rc = s.stop()
    t.join(120)
    status, body, _ = res.get("r", (0, {}, {}))
    check(status == 200 and body["usage"]["completion_tokens"] >= 1,
          f"the request in flight finished: {status}")
    check(rc == 0, f"exit status after SIGTERM: {rc}")
    log = s.log_text()
    check("finishing the requests in flight" in log and "stopped" in log, "drain log")
    check("POST /v1/completions 200" in log, "one log line per request")


def main():
    s = Server("--model", MODEL, "--lm", LM, "--max-inputs", "8", "--max-body-bytes", "65536",
               "--ctx-size", "256", "--max-batch", "8")
    try:
        status, _, body = s.request("GET", "/health")
        check(status == 200 and json.loads(body)["status"] == "ok", "health")
        status, _, body = s.request("GET", "/v1/models")
        ids = [m["id"] for m in json.loads(body)["data"]]
        check(ids == [os.path.basename(MODEL), os.path.basename(LM)], f"models {ids}")
        out = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{s.port}/v1/embeddings", "-H",
                              "Content-Type: application/json", "-d",
                              json.dumps({"input": TEXTS[0]})], capture_output=True, text=True,
                             timeout=60)
        check(out.returncode == 0 and len(json.loads(out.stdout)["data"][0]["embedding"]) == 384,
              "curl embeddings")
        reference = test_embeddings(s)
        test_embedding_errors(s)
        if not SLOW_DEVICE:
            test_concurrent_embeddings(s, reference)
        greedy = test_completions(s)
        test_completion_errors(s)
        test_concurrent_completions(s, greedy)
        test_clients_leave(s, greedy)
    finally:
        rc = s.stop()
        check(rc == 0, f"exit status {rc}")
    test_auth()
    test_queue_full()
    test_drain()
    print(f"{checks} checks, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
