"""The backend of the browser example: an autobahn-python (asyncio) component that runs long jobs for callers.

It registers `com.example.job.run` (kwargs `job`: an ID the caller picks, `steps`: 1..1000, `delay_ms`: 0..10000
per step). A job takes `steps` steps of `delay_ms` each and sums the squares 1² + 2² + ... + steps². After each
step it reports progress twice:
- as a progressive call result to the caller, if the caller asked for them (`receive_progress`), and
- as an event on `com.example.job.progress` (kwargs `job`, `step`, `steps`, `percent`, `state`), which any session
  may follow: another tab, a dashboard.
The final result has kwargs `job`, `steps` and `sum_of_squares`. A caller that cancels the call (CANCEL, mode
`kill`) makes the router send this worker an INTERRUPT: autobahn cancels the running handler, which publishes a
last `canceled` event and answers `wamp.error.canceled`, which the router passes on to the caller.

Run (a router on ws://127.0.0.1:8080/ws, e.g. `cargo run --release` in the repository):

    pip install autobahn msgpack
    python worker.py                                   # until Ctrl-C
    python worker.py --url ws://127.0.0.1:8080/ws --serializer msgpack

The worker is a long-running service: it keeps autobahn's default reconnecting (`max_retries` -1) so that it comes
back after a router restart. It prints one line per job event, and "worker ready" once it is registered.
"""

import argparse
import asyncio

from autobahn.asyncio.component import Component, run
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallResult, RegisterOptions

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--url", default="ws://127.0.0.1:8080/ws", help="the router's WebSocket URL")
parser.add_argument("--serializer", default="json", choices=["json", "msgpack", "cbor"])
parser.add_argument("--realm", default="realm1")
args = parser.parse_args()

component = Component(
    transports=[{"type": "websocket", "url": args.url, "serializers": [args.serializer]}],
    realm=args.realm,
)


@component.on_join
async def joined(session, details):
    async def run_job(job=None, steps=20, delay_ms=200, details=None):
        if not isinstance(job, str) or not job:
            raise ApplicationError("wamp.error.invalid_argument", "kwarg 'job' must be a non-empty string")
        if not isinstance(steps, int) or not 1 <= steps <= 1000:
            raise ApplicationError("wamp.error.invalid_argument", "kwarg 'steps' must be an integer in 1..1000")
        if not isinstance(delay_ms, int) or not 0 <= delay_ms <= 10000:
            raise ApplicationError("wamp.error.invalid_argument", "kwarg 'delay_ms' must be an integer in 0..10000")
        caller = details.caller if details.caller is not None else "(undisclosed)"
        print(f"job {job}: started, {steps} steps of {delay_ms} ms, for caller {caller}", flush=True)
        step, total = 0, 0
        try:
            while step < steps:
                await asyncio.sleep(delay_ms / 1000)
                step += 1
                total += step * step
                percent = step * 100 // steps
                if details.progress:  # the caller asked for progressive results
                    details.progress(job=job, step=step, steps=steps, percent=percent)
                state = "running" if step < steps else "done"
                session.publish(
                    "com.example.job.progress", job=job, step=step, steps=steps, percent=percent, state=state
                )
        except asyncio.CancelledError:
            # The router sent INTERRUPT: the caller canceled the call (or left, or the call timed out).
            print(f"job {job}: interrupted at step {step} of {steps}", flush=True)
            session.publish(
                "com.example.job.progress",
                job=job,
                step=step,
                steps=steps,
                percent=step * 100 // steps,
                state="canceled",
            )
            # With CANCEL mode `kill` the router waits for this answer and passes it on to the caller.
            raise ApplicationError("wamp.error.canceled", f"job {job} stopped at step {step} of {steps}")
        print(f"job {job}: done, sum of squares {total}", flush=True)
        return CallResult(job=job, steps=steps, sum_of_squares=total)

    await session.register(run_job, "com.example.job.run", options=RegisterOptions(details_arg="details"))
    print(f"worker ready: session {details.session} on {args.url} ({args.serializer})", flush=True)


@component.on_leave
def left(session, details):
    print(f"worker left: {details.reason}", flush=True)


if __name__ == "__main__":
    run([component], log_level="warn")
