"""The HTTP bridge (crossbar's publisher, caller and webhook services) through python-requests and curl, with
autobahn-python sessions as the subscriber and the callee.

The router (tests/tests/http_bridge.rs) has realm1 with roles, a listener speaking only HTTP with a publisher
(/publish: principal `app` with a bearer ticket and a signing secret), a caller (/call, timeout 1 s, same
principal) and an open caller in crossbar's error mode (/call200), and a webhook at /hook beside the WebSocket path.
`limits.message_max` is 65536 and `frame_timeout_ms` 1000.

Usage: http_bridge.py WS_URL HTTP_BASE"""

import asyncio
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import random
import shutil
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import requests
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions

from common import Collector, close, connect, run, wait_for

WS_URL, HTTP_BASE = sys.argv[1], sys.argv[2]
WS_BASE = "http://" + urlparse(WS_URL).netloc
TICKET = {"Authorization": "Bearer app-ticket"}
KEY, SECRET = "app", "app-secret"


def signed_params(body, key=KEY, secret=SECRET, seq=1, nonce=None, timestamp=None):
    """A crossbar signed request's query parameters: HMAC-SHA256(secret, key|timestamp|seq|nonce|body)."""
    if timestamp is None:
        timestamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if nonce is None:
        nonce = random.randint(0, 2**53)
    mac = hmac.new(secret.encode(), None, hashlib.sha256)
    for part in (key, timestamp, str(seq), str(nonce)):
        mac.update(part.encode())
    mac.update(body)
    return {
        "key": key,
        "timestamp": timestamp,
        "seq": str(seq),
        "nonce": str(nonce),
        "signature": base64.urlsafe_b64encode(mac.digest()).decode(),
    }


def post(path, body=None, base=HTTP_BASE, headers=None, params=None, data=None):
    """POST with requests (JSON body unless `data`), returns (status, parsed JSON or text)."""
    if data is None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    response = requests.post(base + path, data=data, headers=headers, params=params, timeout=10)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


async def in_thread(function, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: function(*args, **kwargs))


def raw_exchange(host, port, chunks, pause=0.0, wait_close=5.0):
    """Sends `chunks` over a fresh socket (pausing between them) and returns everything read until the router
    closes the connection (or `wait_close` seconds pass)."""
    with socket.create_connection((host, port), timeout=wait_close) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
            if pause:
                time.sleep(pause)
        received = b""
        deadline = time.monotonic() + wait_close
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                return received, True
            received += data
        return received, False


async def main(check):
    subscriber, _ = await connect(WS_URL, "json")
    callee, _ = await connect(WS_URL, "msgpack")
    events = Collector()
    hooks = Collector()
    await subscriber.subscribe(events, "com.example.news", options=SubscribeOptions(details=True))
    await subscriber.subscribe(hooks, "com.example.hook")

    def add(a, b):
        return a + b

    def both(x):
        from autobahn.wamp.types import CallResult

        return CallResult(x, x * 2, doubled=x * 2)

    def kwonly():
        from autobahn.wamp.types import CallResult

        return CallResult(ok=True)

    def nothing():
        return None

    def fail(reason):
        raise ApplicationError("com.example.error.refused", reason, code=7)

    async def hang():
        await asyncio.sleep(3600)

    await callee.register(add, "com.example.add")
    await callee.register(both, "com.example.both")
    await callee.register(kwonly, "com.example.kwonly")
    await callee.register(nothing, "com.example.nothing")
    await callee.register(fail, "com.example.fail")
    await callee.register(hang, "com.example.hang")

    # --- publisher
    status, body = await in_thread(
        post, "/publish", {"topic": "com.example.news", "args": [1, "two"], "kwargs": {"k": [3]}}, headers=TICKET
    )
    check.eq("publish with a bearer ticket: 200", status, 200)
    check.true("publish answers the publication ID", isinstance(body.get("id"), int) and body["id"] > 0)
    args, kwargs, details = await events.wait(1, "the published event")
    check.same("the event's args", args, [1, "two"])
    check.same("the event's kwargs", kwargs, {"k": [3]})
    check.eq("the event's publication ID is the answered one", details.publication, body["id"])
    status, body = await in_thread(post, "/publish", {"topic": "com.example.news"})
    check.eq("publish without credentials: 401", status, 401)
    check.same("crossbar's refusal body", (body["args"], body["kwargs"]), ([], {}))
    status, body = await in_thread(post, "/publish", {"topic": "com.example.news"}, headers={"Authorization": "Bearer nope"})
    check.eq("publish with a wrong ticket: 401", status, 401)
    status, body = await in_thread(post, "/publish", {"topic": "com.forbidden.news"}, headers=TICKET)
    check.eq("publish where the role may not: 403", status, 403)
    check.eq("... with the WAMP error", body["error"], "wamp.error.not_authorized")
    status, body = await in_thread(post, "/publish", {"args": []}, headers=TICKET)
    check.eq("publish without topic: 400", status, 400)
    check.true("... saying what is missing", "topic" in body["error"])
    status, _ = await in_thread(post, "/publish", data=b"{not json", headers={**TICKET, "Content-Type": "application/json"})
    check.eq("publish with a body that is not JSON: 400", status, 400)

    # --- signed requests
    payload = json.dumps({"topic": "com.example.news", "args": ["signed"]}).encode()
    params = signed_params(payload)
    headers = {"Content-Type": "application/json"}
    status, body = await in_thread(post, "/publish", params=params, data=payload, headers=headers)
    check.eq("a signed request: 200", status, 200)
    args, _, _ = await events.wait(2, "the signed publication")
    check.same("the signed publication's args", args, ["signed"])
    status, body = await in_thread(post, "/publish", params=params, data=payload, headers=headers)
    check.eq("the same signed request again (replay): 401", status, 401)
    check.true("... named a replay", "replayed" in body["error"])
    bad = dict(signed_params(payload, seq=2), signature=signed_params(payload, secret="wrong", seq=2)["signature"])
    status, _ = await in_thread(post, "/publish", params=bad, data=payload, headers=headers)
    check.eq("a signature made with another secret: 401", status, 401)
    tampered = signed_params(payload, seq=3)
    status, _ = await in_thread(post, "/publish", params=tampered, data=payload.replace(b"signed", b"forged"), headers=headers)
    check.eq("a signed request with another body: 401", status, 401)
    old = signed_params(payload, seq=4, timestamp="2011-10-14T16:59:51.123Z")
    status, body = await in_thread(post, "/publish", params=old, data=payload, headers=headers)
    check.eq("a signed request from 2011: 400", status, 400)
    check.true("... named expired", "expired" in body["error"])
    unknown = signed_params(payload, key="who", seq=5)
    status, _ = await in_thread(post, "/publish", params=unknown, data=payload, headers=headers)
    check.eq("an unknown key: 401", status, 401)
    missing = signed_params(payload, seq=6)
    del missing["nonce"]
    status, body = await in_thread(post, "/publish", params=missing, data=payload, headers=headers)
    check.eq("a signed request without nonce: 400", status, 400)

    # Replays across connections (and so across shards): the memory is router-wide.
    params = signed_params(payload, seq=7)
    results = []
    for _ in range(4):
        with requests.Session() as fresh:
            response = await in_thread(fresh.post, HTTP_BASE + "/publish", params=params, data=payload, headers=headers, timeout=10)
            results.append(response.status_code)
    check.eq("one signed request on 4 connections: accepted once", results, [200, 401, 401, 401])

    # --- caller
    status, body = await in_thread(post, "/call", {"procedure": "com.example.add", "args": [2, 3]}, headers=TICKET)
    check.eq("call: 200", status, 200)
    check.same("call: one result as crossbar answers it", body, {"args": [5]})
    status, body = await in_thread(post, "/call", {"procedure": "com.example.both", "args": [4]}, headers=TICKET)
    check.same("call: several results and kwargs", body, {"args": [4, 8], "kwargs": {"doubled": 8}})
    status, body = await in_thread(post, "/call", {"procedure": "com.example.kwonly"}, headers=TICKET)
    check.same("call: kwargs only", body, {"kwargs": {"ok": True}})
    status, body = await in_thread(post, "/call", {"procedure": "com.example.nothing"}, headers=TICKET)
    check.same("call: no result", body, {"args": [None]})
    status, body = await in_thread(post, "/call", {"procedure": "com.example.fail", "args": ["no"]}, headers=TICKET)
    check.eq("call: the callee's error: 500", status, 500)
    check.same("... as crossbar's error body", body, {"error": "com.example.error.refused", "args": ["no"], "kwargs": {"code": 7}})
    status, body = await in_thread(post, "/call200", {"procedure": "com.example.fail", "args": ["no"]})
    check.eq("call with errors_as_200: 200, as crossbar", status, 200)
    check.eq("... with the error", body["error"], "com.example.error.refused")
    status, body = await in_thread(post, "/call", {"procedure": "com.example.missing"}, headers=TICKET)
    check.eq("call: no such procedure: 404", status, 404)
    check.eq("... with the WAMP error", body["error"], "wamp.error.no_such_procedure")
    status, body = await in_thread(post, "/call", {"procedure": "wamp.session.count"}, headers=TICKET)
    check.eq("call where the role may not: 403", status, 403)
    started = time.monotonic()
    status, body = await in_thread(post, "/call", {"procedure": "com.example.hang"}, headers=TICKET)
    elapsed = time.monotonic() - started
    check.eq("a callee that never answers: 504", status, 504)
    check.eq("... wamp.error.timeout", body["error"], "wamp.error.timeout")
    check.true(f"... after the service's timeout of 1 s ({elapsed:.2f} s)", 0.9 <= elapsed < 3)
    status, body = await in_thread(
        post, "/call", {"procedure": "com.example.hang", "options": {"timeout": 200}}, headers=TICKET
    )
    check.eq("a shorter timeout asked by the request: 504", status, 504)

    # Keep-alive: several requests on one connection.
    connection = http.client.HTTPConnection(urlparse(HTTP_BASE).hostname, urlparse(HTTP_BASE).port, timeout=5)

    def three_calls():
        answers = []
        for i in range(3):
            connection.request(
                "POST", "/call", json.dumps({"procedure": "com.example.add", "args": [i, i]}),
                {"Content-Type": "application/json", **TICKET},
            )
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read()), response.getheader("Connection")))
        return answers, connection.sock is not None

    answers, still_open = await in_thread(three_calls)
    check.same("three calls on one keep-alive connection", answers, [(200, {"args": [2 * i]}, None) for i in range(3)])
    check.true("... the connection stays open", still_open)
    connection.close()

    # --- bounds
    big = {"topic": "com.example.news", "args": ["x" * 70000]}
    status, body = await in_thread(post, "/publish", big, headers=TICKET)
    check.eq("a body over message_max: 413", status, 413)
    host, port = urlparse(HTTP_BASE).hostname, urlparse(HTTP_BASE).port
    head = b"POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer app-ticket\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    started = time.monotonic()
    received, closed = await in_thread(raw_exchange, host, port, [head, b'{"topic": '], 0.0, 5.0)
    elapsed = time.monotonic() - started
    check.true("a body that stops coming: 408", received.startswith(b"HTTP/1.1 408 "))
    check.true(f"... and the connection closed, within frame_timeout_ms ({elapsed:.2f} s)", closed and elapsed < 4)
    received, closed = await in_thread(raw_exchange, host, port, [b"POST /publish HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n"])
    check.true("a Content-Length over message_max is refused from the head: 413", received.startswith(b"HTTP/1.1 413 "))
    check.true("... and the connection closed", closed)
    received, closed = await in_thread(raw_exchange, host, port, [b"\x16\x03\x01\x02\x00garbage\r\n\r\n"])
    check.true("garbage: 400 and closed", received.startswith(b"HTTP/1.1 400 ") and closed)

    # --- webhook, beside the WebSocket path
    status, text = await in_thread(
        post, "/hook", base=WS_BASE, data=b'{"action": "opened"}', headers={"X-GitHub-Event": "issues", "Content-Type": "application/json", **TICKET}
    )
    check.eq("webhook: 202", status, 202)
    check.eq("webhook: crossbar's answer", text, "OK")
    args, _, _ = await hooks.wait(1, "the webhook's event")
    (event,) = args
    check.eq("webhook event: the body as text", event["body"], '{"action": "opened"}')
    check.eq("webhook event: headers by name", event["headers"]["X-Github-Event"], ["issues"])
    check.true("webhook event: the bearer ticket is not passed on", "Authorization" not in event["headers"])

    # --- curl
    curl = shutil.which("curl")
    if curl:
        out = await in_thread(
            subprocess.run,
            [curl, "-s", "-X", "POST", HTTP_BASE + "/call", "-H", "Content-Type: application/json", "-H",
             "Authorization: Bearer app-ticket", "-d", '{"procedure": "com.example.add", "args": [20, 22]}'],
            capture_output=True, timeout=10,
        )
        check.same("curl: a call", json.loads(out.stdout), {"args": [42]})
        out = await in_thread(
            subprocess.run,
            [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", HTTP_BASE + "/publish", "-H",
             "Content-Type: application/json", "-H", "Authorization: Bearer app-ticket", "-H", "Transfer-Encoding: chunked",
             "--data-binary", "@-"],
            input=b'{"topic": "com.example.news", "args": ["chunked"]}', capture_output=True, timeout=10,
        )
        check.eq("curl: a chunked publication", out.stdout, b"200")
        args, _, _ = await events.wait(4, "the chunked publication")
        check.same("... arrives", args, ["chunked"])
    else:
        raise AssertionError("curl is not installed")

    await close(subscriber, callee)


run("http_bridge", main, timeout=60)
