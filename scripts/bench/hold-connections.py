#!/usr/bin/env python3
"""Opens N TLS keep-alive connections to a server, sends one `GET PATH` on each (so every one
is a served, idle keep-alive connection rather than one still in its handshake), then holds
them all open until SIGTERM or SIGINT. Prints `held N` once all are open, `failed K`
first if some could not be made. For scripts/bench/matrix.sh's "RSS with N idle TLS connections".

    python3 scripts/bench/hold-connections.py HOST PORT N [PATH] &
"""

import asyncio
import signal
import ssl
import sys

# Handshakes in flight at once: under the listen backlog, so none is refused.
PARALLEL = 256


async def open_one(host, port, path, ctx, gate, source):
    async with gate:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, local_addr=source)
        writer.write(f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return writer


async def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/health"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    gate = asyncio.Semaphore(PARALLEL)
    # One source address has ~28,000 ephemeral ports: past that, spread the connections
    # over more of loopback's addresses (a loopback server only).
    sources = [None]
    if count > 20_000 and host.startswith("127."):
        sources = [(f"127.0.0.{i}", 0) for i in range(1, 1 + (count + 19_999) // 20_000)]
    results = await asyncio.gather(
        *(open_one(host, port, path, ctx, gate, sources[i % len(sources)]) for i in range(count)),
        return_exceptions=True,
    )
    writers = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        print(f"failed {len(failed)}: {failed[0]!r}", flush=True)
    print(f"held {len(writers)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    for w in writers:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
