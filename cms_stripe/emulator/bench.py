"""Throughput benchmark: `python -m cms_stripe.emulator.bench [--url URL] [--seconds S] [--connections N]`.

Without --url it starts the emulator as a separate process (rate limits off, no latency) so the
load generator and the server each get a core. The load generator is a lean asyncio HTTP/1.1
client on keep-alive connections, mixing product creates (with idempotency keys), retrieves and
lists, so the figure measures the server rather than stripe-python's own per-call overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

AUTH = "Bearer sk_test_benchmark"


@dataclass
class BenchResult:
    requests: int
    errors: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _worker(host: str, port: int, wid: int, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    product_id: str | None = None
    try:
        while time.monotonic() < deadline:
            n += 1
            phase = n % 3
            if phase == 1 or product_id is None:
                body = f"name=Bench+{wid}-{n}&metadata[cms_id]={wid}-{n}&metadata[src]=bench".encode()
                head = (
                    f"POST /v1/products HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH}\r\n"
                    f"Idempotency-Key: bench-{wid}-{n}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
            elif phase == 2:
                writer.write(
                    f"GET /v1/products/{product_id} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH}\r\n\r\n".encode()
                )
            else:
                writer.write(
                    f"GET /v1/products?limit=3 HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH}\r\n\r\n".encode()
                )
            await writer.drain()
            head_bytes = await reader.readuntil(b"\r\n\r\n")
            status = int(head_bytes.split(b" ", 2)[1])
            length = 0
            for line in head_bytes.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            payload = await reader.readexactly(length)
            if status == 200:
                counts[0] += 1
                if phase == 1 or product_id is None:
                    product_id = json.loads(payload)["id"]
            else:
                counts[1] += 1
    finally:
        writer.close()


async def _run(url: str, seconds: float, connections: int) -> BenchResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    counts = [0, 0]
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(*(_worker(host, port, i, deadline, counts) for i in range(connections)))
    return BenchResult(counts[0], counts[1], time.monotonic() - start)


def run_load(url: str, seconds: float = 3.0, connections: int = 32) -> BenchResult:
    return asyncio.run(_run(url, seconds, connections))


@contextlib.contextmanager
def emulator_process(*extra: str) -> Iterator[str]:
    """Start `python -m cms_stripe.emulator --port 0` and yield its URL."""
    proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "cms_stripe.emulator", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cms_stripe.emulator.bench")
    ap.add_argument("--url", default=None, help="an emulator already running (rate limits off)")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args(argv)
    if args.url:
        result = run_load(args.url, args.seconds, args.connections)
    else:
        with emulator_process("--no-rate-limits") as url:
            result = run_load(url, args.seconds, args.connections)
    print(
        f"emulator throughput: {result.rps:.0f} req/s ({result.requests} OK, {result.errors} errors, "
        f"{args.connections} keep-alive connections, {result.seconds:.1f} s)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
