"""prometheus_client's parser (the Prometheus project's own Python implementation of the text format) against
kreisel's metrics endpoint, after an autobahn-python session has joined and published.

Usage: metrics_check.py WS_URL METRICS_URL"""

import asyncio
import sys
import urllib.request

from autobahn.wamp.types import PublishOptions
from prometheus_client.parser import text_string_to_metric_families

from common import close, connect, run

WS_URL, METRICS_URL = sys.argv[1], sys.argv[2]


def scrape():
    with urllib.request.urlopen(METRICS_URL, timeout=5) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


async def main(check):
    session, _ = await connect(WS_URL, "json")
    await session.subscribe(lambda *args, **kwargs: None, "com.example.watched")
    await session.publish("com.example.metrics", 1, options=PublishOptions(acknowledge=True))
    status, content_type, text = await asyncio.get_running_loop().run_in_executor(None, scrape)
    check.eq("HTTP status", status, 200)
    check.true("text format 0.0.4", content_type.startswith("text/plain; version=0.0.4"))
    # The parser names a counter family without its `_total` suffix; the sample keeps it.
    families = {family.name: family for family in text_string_to_metric_families(text)}
    check.true("every sample parses into a typed family", all(f.type in ("counter", "gauge") for f in families.values()))

    def value(name):
        (sample,) = families[name].samples
        return sample.value

    check.eq("publications are a counter", families["kreisel_publications"].type, "counter")
    check.eq("the counter sample keeps _total", families["kreisel_publications"].samples[0].name, "kreisel_publications_total")
    check.eq("the publication is counted", value("kreisel_publications"), 1)
    check.eq("sessions are a gauge", families["kreisel_sessions"].type, "gauge")
    check.eq("one session is joined", value("kreisel_sessions"), 1)
    check.eq("one session joined so far", value("kreisel_sessions_joined"), 1)
    check.true("the session's and the scrape's connections are open", value("kreisel_connections") >= 2)
    by_realm = {
        (family.name, sample.labels.get("realm")): sample.value
        for family in families.values()
        for sample in family.samples
        if family.name.startswith("kreisel_realm_")
    }
    check.eq("realm1 has the session", by_realm[("kreisel_realm_sessions", "realm1")], 1)
    check.eq("realm1 has the subscription", by_realm[("kreisel_realm_subscriptions", "realm1")], 1)
    check.eq("realm1 has no registration", by_realm[("kreisel_realm_registrations", "realm1")], 0)
    await close(session)


run("metrics", main)
