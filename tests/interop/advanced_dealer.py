"""autobahn-python against kreisel's advanced dealer features: shared registrations (roundrobin, first), call
timeout (router-enforced, INTERRUPT to the callee) and call canceling (the callee's handler is cancelled).

Usage: advanced_dealer.py URL SERIALIZER"""

import asyncio
import sys

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, RegisterOptions

from common import connect, run

URL, SERIALIZER = sys.argv[1], sys.argv[2]


async def main(check):
    caller, details = await connect(URL, SERIALIZER)
    features = caller._router_roles["dealer"]
    check.true("dealer announces shared_registration", features.shared_registration)
    check.true("dealer announces call_canceling", features.call_canceling)
    check.true("dealer announces call_timeout", features.call_timeout)

    callees = [(await connect(URL, SERIALIZER))[0] for _ in range(3)]
    for index, callee in enumerate(callees):
        await callee.register(lambda i=index: i, "com.example.rr", options=RegisterOptions(invoke="roundrobin"))
        await callee.register(lambda i=index: i, "com.example.first", options=RegisterOptions(invoke="first"))
    served = [await caller.call("com.example.rr") for _ in range(6)]
    check.eq("roundrobin order", served, [0, 1, 2, 0, 1, 2])
    check.eq("first serves the first callee", [await caller.call("com.example.first") for _ in range(3)], [0, 0, 0])
    try:
        await caller.register(lambda: None, "com.example.rr", options=RegisterOptions(invoke="last"))
        raise AssertionError("a registration with another policy succeeded")
    except ApplicationError as error:
        check.eq("different invocation policy", error.error, "wamp.error.procedure_exists_with_different_invocation_policy")
    callees[0].leave()
    await asyncio.sleep(0.2)
    check.eq("first moves to the next callee when the first leaves", await caller.call("com.example.first"), 1)

    # Router-enforced timeout: the caller gets wamp.error.timeout, the callee's handler is interrupted.
    slow = callees[1]
    interrupted = asyncio.get_running_loop().create_future()

    async def sleepy():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if not interrupted.done():
                interrupted.set_result(True)
            raise

    await slow.register(sleepy, "com.example.sleepy")
    try:
        await caller.call("com.example.sleepy", options=CallOptions(timeout=300))
        raise AssertionError("a call past its timeout succeeded")
    except ApplicationError as error:
        check.eq("timed out call", error.error, "wamp.error.timeout")
    check.true("the callee was interrupted on timeout", await asyncio.wait_for(interrupted, 5))

    # Canceling: cancelling the caller's future sends CANCEL; the callee's handler is interrupted.
    interrupted = asyncio.get_running_loop().create_future()
    pending = asyncio.ensure_future(caller.call("com.example.sleepy"))
    await asyncio.sleep(0.2)
    pending.cancel()
    check.true("the callee was interrupted on cancel", await asyncio.wait_for(interrupted, 5))
    check.eq("the procedure still works afterwards", await caller.call("com.example.rr"), 1)

    for session in [caller, *callees[1:]]:
        session.leave()
    await asyncio.sleep(0.1)


run(f"advanced dealer over {URL} ({SERIALIZER})", main)
