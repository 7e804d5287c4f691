#!/usr/bin/env python3
"""Writes the seeds of the `router` fuzz target into fuzz/corpus/router/seed-*: client byte
streams for one connection, first byte 0 (HTTP/1.1) or 1 (HTTP/2: frames after the preface,
which the target sends itself). HTTP/2 header blocks use HPACK literals without indexing and
without Huffman coding, so the fuzzer can mutate names and values as plain bytes.

    python3 fuzz/make-router-seeds.py
"""

import json
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent / "corpus" / "router"

IRIS = json.dumps({"features": [5.1, 3.5, 1.4, 0.2]}).encode()
MULTIPART = (
    b"--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
    b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\nnot really\r\n--XB--\r\n"
)


def h1(method, path, headers=(), body=b""):
    head = f"{method} {path} HTTP/1.1\r\nhost: fuzz\r\n".encode()
    for name, value in headers:
        head += f"{name}: {value}\r\n".encode()
    if body and not any(n.lower() == "transfer-encoding" for n, _ in headers):
        head += f"content-length: {len(body)}\r\n".encode()
    return head + b"\r\n" + body


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    name, value = name.encode(), value.encode()
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


SETTINGS = frame(0x4, 0, 0)
DATA, HEADERS, RST_STREAM, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x6, 0x7, 0x8
END_STREAM, END_HEADERS = 0x1, 0x4


def h2_request(stream, method, path, headers=(), body=b"", chunks=1):
    block = literal(":method", method) + literal(":scheme", "https") + literal(":path", path)
    block += literal(":authority", "fuzz")
    for name, value in headers:
        block += literal(name, value)
    if not body:
        return frame(HEADERS, END_HEADERS | END_STREAM, stream, block)
    out = frame(HEADERS, END_HEADERS, stream, block)
    step = max(1, -(-len(body) // chunks))
    parts = [body[i : i + step] for i in range(0, len(body), step)]
    for i, part in enumerate(parts):
        out += frame(DATA, END_STREAM if i == len(parts) - 1 else 0, stream, part)
    return out


JSON = [("content-type", "application/json")]
SEEDS = {
    "h1-health": h1("GET", "/health"),
    "h1-pipelined": h1("GET", "/ready") + h1("POST", "/predict", JSON, IRIS) + h1("GET", "/stats")
    + h1("HEAD", "/health") + h1("GET", "/metrics"),
    "h1-predict-nocache-model": h1(
        "POST", "/predict?model=iris-mlp", JSON + [("cache-control", "no-cache")], IRIS
    ),
    "h1-predict-chunked": h1(
        "POST", "/predict", JSON + [("transfer-encoding", "chunked")],
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(IRIS), IRIS),
    ),
    "h1-refusals": h1("POST", "/predict", [("content-type", "text/plain")], b"hello")
    + h1("POST", "/predict", JSON, b'{"features": [1, 2]}')
    + h1("POST", "/predict", JSON, b'{"features": [1e999, "x"]')
    + h1("DELETE", "/health") + h1("GET", "/nope"),
    "h1-multipart": h1(
        "POST", "/predict", [("content-type", "multipart/form-data; boundary=XB")], MULTIPART
    ),
    "h1-image-raw": h1("POST", "/predict", [("content-type", "image/png")], b"\x89PNG\r\n\x1a\n"),
    "h1-expect": h1("POST", "/predict", JSON + [("expect", "100-continue")], IRIS),
    "h2-health": SETTINGS + h2_request(1, "GET", "/health"),
    "h2-streams": SETTINGS + h2_request(1, "POST", "/predict", JSON, IRIS)
    + h2_request(3, "GET", "/stats") + h2_request(5, "POST", "/predict", JSON, IRIS, chunks=3)
    + h2_request(7, "GET", "/ready") + frame(PING, 0, 0, b"12345678"),
    "h2-refusals": SETTINGS
    + h2_request(1, "POST", "/predict", [("content-type", "text/plain")], b"hello")
    + h2_request(3, "POST", "/predict", JSON + [("content-length", "999999999")], b"{")
    + h2_request(5, "PUT", "/predict") + h2_request(7, "GET", "/x"),
    "h2-reset": SETTINGS + frame(HEADERS, END_HEADERS, 1,
        literal(":method", "POST") + literal(":scheme", "https") + literal(":path", "/predict")
        + literal("content-type", "application/json"))
    + frame(DATA, 0, 1, IRIS[:10]) + frame(RST_STREAM, 0, 1, struct.pack(">I", 8))
    + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20)),
    "h2-multipart": SETTINGS + h2_request(
        1, "POST", "/predict", [("content-type", "multipart/form-data; boundary=XB")], MULTIPART
    ) + frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, stream in SEEDS.items():
        mode = b"\x01" if name.startswith("h2-") else b"\x00"
        (OUT / f"seed-{name}").write_bytes(mode + stream)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
