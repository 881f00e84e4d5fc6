#!/usr/bin/env python3
"""An independent WebSocket server for websocksy's client-mode tests.

Python `websockets` (asyncio API; .ci/run installs websockets==17.4), so
what `websocksy connect` is tested against is not websocksy's own code.

    python3 tests/peers/ws_server.py [--echo | --sink | --source N SIZE] [options]

Modes (one at a time):
  --echo             (default) send every message back, text as text,
                     binary as binary
  --sink             read and count; send nothing back
  --source N SIZE    send N binary messages of SIZE bytes, then close 1000.
                     The messages concatenated are the test pattern of
                     tests/src/pattern.rs (byte i of the stream is i % 251),
                     so a receiver can check order and completeness with
                     `pattern::Check`; N = 0 sends nothing and closes
                     (after any --send)

Options:
  --host HOST        address to listen on (default 127.0.0.1; ::1 for IPv6)
  --port PORT        port to listen on (default 0: any free one); a server
                     restarted on the same port can bind it again at once
  --send TEXT        send this text message first on every connection (the
                     server speaks first); repeatable, sent in order
  --drop-after N     after the Nth message received on a connection (after
                     echoing it in --echo mode), end that connection:
  --drop-with HOW    abort (default): close the TCP connection without a
                     close frame; rst: the same with a reset (SO_LINGER 0);
                     a number: send a close frame with that code and finish
                     the closing handshake
  --status CODE      answer the upgrade request with CODE (401, 403, 500, ...)
                     and the body "refused by ws_server.py: status CODE\\n"
                     instead of 101
  --status-times K   only the first K requests get --status; later ones are
                     upgraded (default: all)
  --require-basic USER:PASS
                     401 (with WWW-Authenticate: Basic) unless the request
                     has these Basic credentials
  --subprotocols A,B accept the first of these the client offers (in this
                     order); a client offering none of them is upgraded
                     without a subprotocol (not refused)
  --tls CERT KEY     serve wss:// with this certificate chain and key
  --client-ca CA     with --tls: require a client certificate signed by CA
  --quiet            no `message` lines (for bulk transfers; the `close`
                     line still has the counts)

Events, one line each on stdout (flushed), fields as `key=value`; values that
may hold spaces are JSON strings or objects (`reason=`, `data=`, `cert=`,
`headers=`, always compact JSON, `headers=` always last on its line):

  listening on HOST:PORT                       ready (IPv6 as [::1]:PORT)
  request conn=K path=PATH headers={...}       an upgrade request arrived
                                               (K counts requests from 1;
                                               header names in lower case,
                                               repeated ones joined by ", ")
  response conn=K status=CODE                  what was answered (101 or the
                                               refusal)
  open conn=K path=PATH subprotocol=P|- cert=JSON|- user=U|- headers={...}
                                               upgraded; cert is the client
                                               certificate's subject, RFC 4514
                                               order ("CN=alice,O=Example")
  sent conn=K text|binary len=L                one message sent (not echoes)
  message conn=K text|binary len=L sha256=HEX data=...
                                               one message received; data=
                                               only when L <= 1024: text as a
                                               JSON string, binary as hex
  drop conn=K after=N with=abort|rst|CODE      --drop-after took effect
  close conn=K code=C reason=JSON messages_in=M bytes_in=B messages_out=M bytes_out=B
                                               the connection ended; C is the
                                               code of the client's close frame,
                                               1005 if it had none, 1006 if no
                                               close frame arrived
  error JSON                                   an error asyncio reported
                                               (failed TLS handshakes are not:
                                               asyncio does not report them)
"""

import argparse
import asyncio
import base64
import hashlib
import json
import socket
import ssl
import struct
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

# Short names for the certificate subject's attributes, as OpenSSL prints them.
SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "emailAddress": "emailAddress",
}


def emit(*parts):
    print(*parts, flush=True)


def js(value):
    """Compact JSON, ASCII only, so a value never breaks the line."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def headers_json(headers):
    d = {}
    for name, value in headers.raw_items():
        name = name.lower()
        d[name] = d[name] + ", " + value if name in d else value
    return js(d)


def pattern(offset, size):
    """`size` bytes of the test pattern (byte i is i % 251) from `offset`."""
    period = bytes(range(251))
    start = offset % 251
    reps = (start + size) // 251 + 1
    return (period * reps)[start:start + size]


def parse_args(argv):
    p = argparse.ArgumentParser(description="WebSocket test server (see the module docstring)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--echo", action="store_true")
    mode.add_argument("--sink", action="store_true")
    mode.add_argument("--source", nargs=2, type=int, metavar=("N", "SIZE"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--send", action="append", default=[], metavar="TEXT")
    p.add_argument("--drop-after", type=int, metavar="N")
    p.add_argument("--drop-with", default="abort", metavar="abort|rst|CODE")
    p.add_argument("--status", type=int, metavar="CODE")
    p.add_argument("--status-times", type=int, metavar="K")
    p.add_argument("--require-basic", metavar="USER:PASS")
    p.add_argument("--subprotocols", metavar="A,B")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--client-ca", metavar="CA")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.drop_with not in ("abort", "rst") and not a.drop_with.isdigit():
        p.error("--drop-with takes abort, rst or a close code")
    if a.client_ca and not a.tls:
        p.error("--client-ca needs --tls")
    return a


class State:
    """Counters shared by all connections (one event loop, no locks)."""

    def __init__(self):
        self.requests = 0


def main():
    args = parse_args(sys.argv[1:])
    state = State()
    subprotocols = [s for s in (args.subprotocols or "").split(",") if s]

    def process_request(conn, request):
        state.requests += 1
        conn.test_id = state.requests
        conn.test_user = None
        emit("request conn=%d path=%s headers=%s" % (conn.test_id, request.path, headers_json(request.headers)))
        if args.status is not None and (args.status_times is None or conn.test_id <= args.status_times):
            return conn.respond(args.status, "refused by ws_server.py: status %d\n" % args.status)
        if args.require_basic:
            auth = request.headers.get("Authorization", "")
            user = None
            if auth[:6].lower() == "basic ":
                try:
                    decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
                except ValueError:
                    decoded = ""
                if decoded == args.require_basic:
                    user = decoded.split(":", 1)[0]
            if user is None:
                r = conn.respond(401, "refused by ws_server.py: bad credentials\n")
                r.headers["WWW-Authenticate"] = 'Basic realm="ws_server.py"'
                return r
            conn.test_user = user
        return None

    def process_response(conn, request, response):
        emit("response conn=%d status=%d" % (getattr(conn, "test_id", 0), response.status_code))

    def select_subprotocol(conn, offered):
        for s in subprotocols:
            if s in offered:
                return s
        return None

    async def handler(ws):
        k = ws.test_id
        cert = "-"
        peercert = ws.transport.get_extra_info("peercert")
        if peercert:
            rdns = [",".join("%s=%s" % (SHORT.get(n, n), v) for n, v in rdn) for rdn in peercert.get("subject", ())]
            cert = js(",".join(reversed(rdns)))
        emit("open conn=%d path=%s subprotocol=%s cert=%s user=%s headers=%s" % (
            k, ws.request.path, ws.subprotocol or "-", cert, ws.test_user or "-",
            headers_json(ws.request.headers)))
        counts = {"mi": 0, "bi": 0, "mo": 0, "bo": 0}

        async def send(msg, report=True):
            await ws.send(msg)
            size = len(msg.encode("utf-8") if isinstance(msg, str) else msg)
            counts["mo"] += 1
            counts["bo"] += size
            if report:
                emit("sent conn=%d %s len=%d" % (k, "text" if isinstance(msg, str) else "binary", size))

        try:
            try:
                for text in args.send:
                    await send(text)
                if args.source:
                    n, size = args.source
                    for i in range(n):
                        await send(pattern(i * size, size))
                    # Waits for the client's close frame (close_timeout, 10 s).
                    await ws.close(1000, "source done")
                    return
                async for msg in ws:
                    data = msg.encode("utf-8") if isinstance(msg, str) else msg
                    counts["mi"] += 1
                    counts["bi"] += len(data)
                    if not args.quiet:
                        line = "message conn=%d %s len=%d sha256=%s" % (
                            k, "text" if isinstance(msg, str) else "binary", len(data),
                            hashlib.sha256(data).hexdigest())
                        if len(data) <= 1024:
                            line += " data=" + (js(msg) if isinstance(msg, str) else data.hex())
                        emit(line)
                    if not args.sink:
                        await send(msg, report=False)
                    if args.drop_after is not None and counts["mi"] >= args.drop_after:
                        emit("drop conn=%d after=%d with=%s" % (k, counts["mi"], args.drop_with))
                        if args.drop_with == "abort":
                            ws.transport.abort()
                        elif args.drop_with == "rst":
                            sock = ws.transport.get_extra_info("socket")
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            ws.transport.abort()
                        else:
                            await ws.close(int(args.drop_with), "dropped by ws_server.py")
                        break
            except ConnectionClosed:
                pass
            await ws.wait_closed()
        finally:
            rcvd = ws.protocol.close_rcvd
            if rcvd is not None:
                code, reason = rcvd.code, rcvd.reason
            else:
                code, reason = 1006, ""
            emit("close conn=%d code=%d reason=%s messages_in=%d bytes_in=%d messages_out=%d bytes_out=%d" % (
                k, code, js(reason), counts["mi"], counts["bi"], counts["mo"], counts["bo"]))

    ctx = None
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        if args.client_ca:
            ctx.load_verify_locations(args.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED

    async def run():
        loop = asyncio.get_running_loop()
        # Errors asyncio reports: one line each, not a traceback.
        loop.set_exception_handler(lambda _loop, c: emit("error " + js("%s: %s" % (
            c.get("message"), c.get("exception")))))
        async with serve(
            handler,
            args.host,
            args.port,
            ssl=ctx,
            subprotocols=subprotocols or None,
            select_subprotocol=select_subprotocol if subprotocols else None,
            process_request=process_request,
            process_response=process_response,
            compression=None,  # no permessage-deflate: frames as sent
            ping_interval=None,  # no pings of its own: the tests control timing
            max_size=None,
        ) as server:
            host, port = server.sockets[0].getsockname()[:2]
            emit("listening on %s:%d" % ("[%s]" % host if ":" in host else host, port))
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
