"""kreisel's health probes read with python `requests`, as HTTP health checks of load balancers and Kubernetes read
them: while the router serves (an autobahn-python session joined), and during a lame-duck drain.

Usage: health_check.py serving|draining BASE_URL WS_URL
BASE_URL is the metrics listener (http://HOST:PORT); WS_URL a WebSocket endpoint for the session (serving only)."""

import asyncio
import sys

import requests

from common import close, connect, run

PHASE, BASE_URL, WS_URL = sys.argv[1], sys.argv[2], sys.argv[3]


def fetch(method, path):
    response = requests.request(method, BASE_URL + path, timeout=5)
    return response.status_code, response.headers, response.text


def sample(page, name):
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    raise AssertionError(f"no sample {name}")


async def main(check):
    loop = asyncio.get_running_loop()

    async def http(method, path):
        return await loop.run_in_executor(None, fetch, method, path)

    if PHASE == "serving":
        session, _ = await connect(WS_URL, "json")
        for path in ("/healthz", "/readyz"):
            status, headers, text = await http("GET", path)
            check.eq(f"GET {path}: 200", status, 200)
            check.eq(f"GET {path}: body", text, "ok\n")
            check.eq(f"GET {path}: plain text", headers["Content-Type"], "text/plain; charset=utf-8")
            check.eq(f"GET {path}: not cached", headers["Cache-Control"], "no-store")
        status, headers, text = await http("HEAD", "/readyz")
        check.eq("HEAD /readyz: 200", status, 200)
        check.eq("HEAD /readyz: no body", text, "")
        status, _, _ = await http("GET", "/wp-admin/")
        check.eq("a stray request: 404", status, 404)
        status, _, page = await http("GET", "/metrics")
        check.eq("metrics: 200", status, 200)
        check.true("the stray request is counted", sample(page, "kreisel_http_stray_requests_total") >= 1)
        check.eq("not draining", sample(page, "kreisel_draining"), 0)
        await close(session)
    else:
        status, _, text = await http("GET", "/readyz")
        check.eq("GET /readyz while draining: 503", status, 503)
        check.eq("the reason", text, "draining (lame duck): not accepting sessions\n")
        status, _, _ = await http("HEAD", "/readyz")
        check.eq("HEAD /readyz while draining: 503", status, 503)
        status, _, text = await http("GET", "/healthz")
        check.eq("GET /healthz while draining: 200 (alive)", status, 200)
        status, _, page = await http("GET", "/metrics")
        check.eq("metrics while draining: 200", status, 200)
        check.eq("draining", sample(page, "kreisel_draining"), 1)


run(f"health ({PHASE})", main)
