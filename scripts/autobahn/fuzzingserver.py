"""Helpers for scripts/autobahn-client.sh that talk to wstest's fuzzingserver
without websocksy (so the case count and the report do not depend on the
client under test). Python 3 with `websockets` (.ci/run installs it).

  fuzzingserver.py free-port
      print a TCP port on 127.0.0.1 that was free a moment ago
  fuzzingserver.py wait-listen PORT SECONDS PID
      connect to 127.0.0.1:PORT until it accepts; exit 0 when it does, 1
      after SECONDS, 3 as soon as process PID (wstest) is gone
  fuzzingserver.py count BASE_URL [CAFILE]
      print the number of cases (BASE_URL/getCaseCount)
  fuzzingserver.py update BASE_URL AGENT [CAFILE]
      have the server write its reports (BASE_URL/updateReports?agent=AGENT)
      and wait for it to close the connection

A CAFILE is the certificate a wss:// server must present (self-signed).
Exit status 2 on any other failure, with the reason on stderr.
"""

import asyncio
import os
import socket
import ssl
import sys
import time

TIMEOUT = 60


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listen(port, seconds, pid):
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return 0
        except OSError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 3
        if time.monotonic() >= deadline:
            return 1
        # Between connect attempts, not a guess at readiness.
        time.sleep(0.05)


def ssl_context(url, cafile):
    if not url.startswith("wss:"):
        return None
    ctx = ssl.create_default_context(cafile=cafile)
    # The run's certificate is made for 127.0.0.1 (subjectAltName IP).
    return ctx


async def talk(url, cafile):
    """Open `url`, collect the server's messages until it closes."""
    from websockets.asyncio.client import connect

    got = []
    async with asyncio.timeout(TIMEOUT):
        async with connect(url, ssl=ssl_context(url, cafile), compression=None,
                           max_size=None, ping_interval=None) as ws:
            async for msg in ws:
                got.append(msg)
    return got


def main(argv):
    try:
        if argv[1:2] == ["free-port"]:
            print(free_port())
            return 0
        if len(argv) == 5 and argv[1] == "wait-listen":
            return wait_listen(int(argv[2]), float(argv[3]), int(argv[4]))
        if len(argv) in (3, 4) and argv[1] == "count":
            got = asyncio.run(talk(argv[2].rstrip("/") + "/getCaseCount", argv[3] if len(argv) > 3 else None))
            if len(got) != 1 or not str(got[0]).strip().isdigit():
                print("fuzzingserver.py: getCaseCount answered %r" % (got,), file=sys.stderr)
                return 2
            print(int(got[0]))
            return 0
        if len(argv) in (4, 5) and argv[1] == "update":
            url = "%s/updateReports?agent=%s" % (argv[2].rstrip("/"), argv[3])
            asyncio.run(talk(url, argv[4] if len(argv) > 4 else None))
            return 0
    except Exception as e:  # one line for the shell script, not a traceback
        print("fuzzingserver.py %s: %s: %s" % (argv[1], type(e).__name__, e), file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
