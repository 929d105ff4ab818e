"""autobahn-python against kreisel: everything in pubsub.py and rpc.py, in one run.

Usage: basic_profile.py URL SERIALIZER   (URL: ws://127.0.0.1:PORT/ws or rs://127.0.0.1:PORT)"""

import sys

from common import run
from pubsub import pubsub
from rpc import rpc

URL, SERIALIZER = sys.argv[1], sys.argv[2]


async def main(check):
    await pubsub(check, URL, SERIALIZER)
    await rpc(check, URL, SERIALIZER)


if __name__ == "__main__":
    run(f"basic profile over {URL} ({SERIALIZER})", main)
