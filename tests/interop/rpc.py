"""autobahn-python against kreisel: remote procedure calls.

Usage: rpc.py URL SERIALIZER   (URL: ws://127.0.0.1:PORT/ws or rs://127.0.0.1:PORT; SERIALIZER: json|msgpack)

Checks: WELCOME details and the dealer features used here; calls with args and kwargs (unicode, nesting, large
integers, floats, booleans, null, binary) echoed back exactly; single, empty and kwargs-only results; concurrent
calls answered out of order; a callee raising ApplicationError("com.myapp.error.custom", "text", code=7) and the
caller seeing that URI, args and kwargs; wamp.error.no_such_procedure; registering a procedure twice
(wamp.error.procedure_already_exists); progressive results; unregister (and registering the procedure again from
another session); a callee leaving (GOODBYE) or dropping its transport with a call pending (wamp.error.canceled)."""

import asyncio
import random
import sys

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, CallResult, RegisterOptions

import payloads
from common import check_welcome, close, connect, run, wait_for

URL, SERIALIZER = sys.argv[1], sys.argv[2]
DETAILS = RegisterOptions(details_arg="details")


def echo(*args, **kwargs):
    return CallResult(*args, **kwargs)


async def pending_call_canceled(check, url, serializer, caller, how):
    """A callee goes away (`how`: "leave" sends GOODBYE, "drop" closes the transport) while a call is pending."""
    callee, _ = await connect(url, serializer)
    invoked = asyncio.get_running_loop().create_future()
    procedure = f"com.example.hang.{how}"

    async def hang():
        invoked.set_result(True)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            # autobahn cancels pending invocations when the session goes; returning (rather than raising) keeps
            # it from trying to send an ERROR on the closed transport.
            return None

    await callee.register(hang, procedure)
    pending = asyncio.ensure_future(caller.call(procedure))
    await wait_for(invoked, "INVOCATION")
    if how == "leave":
        callee.leave()
    else:
        callee._transport.close()
    await check.error(f"callee {how}s with a call pending", pending, "wamp.error.canceled")
    await wait_for(callee.closed, "the departed callee's transport to close")
    await check.error(f"procedure gone after the callee {how}s", caller.call(procedure), "wamp.error.no_such_procedure")


async def rpc(check, url, serializer):
    callee, callee_details = await connect(url, serializer)
    caller, caller_details = await connect(url, serializer)
    check_welcome(check, "callee", callee, callee_details, serializer)
    check_welcome(check, "caller", caller, caller_details, serializer)
    dealer = caller._router_roles["dealer"]
    check.true("dealer announces progressive_call_results", dealer.progressive_call_results)

    # Args and kwargs round trip, exactly.
    args, kwargs = payloads.args(serializer), payloads.kwargs(serializer)
    registration = await callee.register(echo, "com.example.echo")
    result = await caller.call("com.example.echo", *args, **kwargs)
    check.same("RESULT args", list(result.results), args)
    check.same("RESULT kwargs", result.kwresults, kwargs)
    check.same("single result", await caller.call("com.example.echo", "😀"), "😀")
    check.same("binary result", await caller.call("com.example.echo", b"\x00\xff"), b"\x00\xff")
    check.same("no result", await caller.call("com.example.echo"), None)
    result = await caller.call("com.example.echo", a=1, b=[b"\x01"])
    check.same("kwargs-only RESULT", (list(result.results), result.kwresults), ([], {"a": 1, "b": [b"\x01"]}))

    # Concurrent calls, answered in another order than they were made.
    async def slow_square(x):
        await asyncio.sleep(random.uniform(0, 0.05))
        return x * x

    await callee.register(slow_square, "com.example.square")
    squares = await asyncio.gather(*(caller.call("com.example.square", i) for i in range(30)))
    check.same("30 concurrent calls each get their own result", squares, [i * i for i in range(30)])

    # Registering the same procedure twice (another session, then the same one).
    await check.error("REGISTER by another session", caller.register(echo, "com.example.echo"), "wamp.error.procedure_already_exists")
    await check.error("REGISTER again by the same session", callee.register(echo, "com.example.echo"), "wamp.error.procedure_already_exists")

    # Callee errors reach the caller with URI, args and kwargs.
    def fail():
        raise ApplicationError("com.myapp.error.custom", "text", code=7)

    def fail_rich():
        raise ApplicationError("com.myapp.error.rich", "ü😀", b"\x00\xfe", [1, None], detail={"bin": b"\x01", "n": 2**53})

    await callee.register(fail, "com.example.fail")
    await callee.register(fail_rich, "com.example.fail_rich")
    await check.error("callee error", caller.call("com.example.fail"), "com.myapp.error.custom", ["text"], {"code": 7})
    await check.error(
        "callee error with unicode and binary payload",
        caller.call("com.example.fail_rich"),
        "com.myapp.error.rich",
        ["ü😀", b"\x00\xfe", [1, None]],
        {"detail": {"bin": b"\x01", "n": 2**53}},
    )
    await check.error("unregistered procedure", caller.call("com.example.nobody"), "wamp.error.no_such_procedure")

    # Progressive call results, with args and kwargs in the progress.
    async def stream(n, details=None):
        if details.progress is None:
            raise ApplicationError("com.example.error.no_progress", "caller did not ask for progress")
        for i in range(n):
            details.progress(i, step=f"{i}/{n}")
            await asyncio.sleep(0)
        return n

    await callee.register(stream, "com.example.stream", options=DETAILS)
    progress = []
    total = await caller.call(
        "com.example.stream", 3, options=CallOptions(on_progress=lambda *a, **k: progress.append((list(a), k)))
    )
    check.same("progressive results", progress, [([i], {"step": f"{i}/3"}) for i in range(3)])
    check.same("final result after the progress", total, 3)

    # Unregister: the procedure is gone, and another session may register it.
    await registration.unregister()
    check.true("registration inactive after UNREGISTER", not registration.active)
    await check.error("call after UNREGISTER", caller.call("com.example.echo", 1), "wamp.error.no_such_procedure")
    await caller.register(lambda: "caller's echo", "com.example.echo")
    check.same("procedure registered again by another session", await callee.call("com.example.echo"), "caller's echo")

    # A callee leaving, or dropping its transport, with a call pending: the caller gets wamp.error.canceled.
    await pending_call_canceled(check, url, serializer, caller, "leave")
    await pending_call_canceled(check, url, serializer, caller, "drop")

    await close(caller, callee)


if __name__ == "__main__":
    run(f"rpc over {URL} ({SERIALIZER})", lambda check: rpc(check, URL, SERIALIZER))
