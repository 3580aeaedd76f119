"""HTTP/1.1 on asyncio streams, with h11 doing the protocol (framing, keep-alive, chunked bodies,
pipelining, malformed input) so the emulator has no hand-written parser.

One coroutine per connection reads a request, awaits the handler, writes the response and, on a
keep-alive connection, goes round again. The handler can raise `DropConnection` to close the
socket without answering (the emulator's dropped-connection faults).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import h11

from .pipeline import DropConnection, Request, Response

# A request head is refused with a 431 once more than MAX_HEAD_BYTES of it sit in h11's buffer still
# incomplete. Reads come READ_CHUNK at a time, so a head over 64 KiB may pass and one over 128 KiB
# never does (the old parser's bound was asyncio's 64 KiB stream limit; real clients send ~1 KiB).
MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024

Handler = Callable[[Request], Awaitable[Response]]


class _PeerGone(Exception):
    """The client closed the connection between requests."""


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Status"


def _wants_keep_alive(event: h11.Request) -> bool:
    """HTTP/1.1 keeps the connection unless the client says `Connection: close` (h11 applies the
    same rule to the framing; this decides the `Connection` header we answer with)."""
    if event.http_version != b"1.1":
        return False
    for name, value in event.headers:
        if name == b"connection" and b"close" in {t.strip() for t in value.lower().split(b",")}:
            return False
    return True


def _encode(conn: h11.Connection, resp: Response, keep_alive: bool, head: bool = False) -> bytes:
    """Status line, headers and body; a HEAD answer keeps the headers (Content-Length included) but
    carries no body, which h11 enforces."""
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(resp.body))),
        ("Connection", "keep-alive" if keep_alive else "close"),
        *resp.headers.items(),
    ]
    return b"".join(
        (
            conn.send(h11.Response(status_code=resp.status, headers=headers, reason=_reason(resp.status))) or b"",
            b"" if head else conn.send(h11.Data(data=resp.body)) or b"",
            conn.send(h11.EndOfMessage()) or b"",
        )
    )


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event | type[h11.PAUSED]:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event  # type: ignore[return-value]
        conn.receive_data(await reader.read(READ_CHUNK))  # b"" at EOF tells h11 the peer closed


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[Request, bool]:
    event = await _next_event(conn, reader)
    if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
        raise _PeerGone()
    if not isinstance(event, h11.Request):  # pragma: no cover - h11 yields a Request first
        raise h11.RemoteProtocolError("expected a request", error_status_hint=400)
    if conn.they_are_waiting_for_100_continue:
        writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")) or b"")
    chunks: list[bytes] = []
    while True:
        part = await _next_event(conn, reader)
        if isinstance(part, h11.Data):
            chunks.append(bytes(part.data))
        elif isinstance(part, h11.EndOfMessage):
            break
        else:  # ConnectionClosed mid-body surfaces as RemoteProtocolError from h11; anything else is a bug
            raise _PeerGone()
    target = event.target.decode("latin-1")
    path, _, query = target.partition("?")
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
    req = Request(event.method.decode("ascii").upper(), path, query, headers, b"".join(chunks))
    return req, _wants_keep_alive(event)


def _protocol_error(conn: h11.Connection, exc: h11.RemoteProtocolError) -> bytes:
    """The 4xx h11 suggests (400 malformed, 431 head too large), if we may still answer at all."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return b""
    message = "Request headers too large" if exc.error_status_hint == 431 else f"Malformed HTTP request: {exc}"
    body = json.dumps({"error": {"type": "invalid_request_error", "message": message}}).encode()
    try:
        return _encode(conn, Response(exc.error_status_hint, body), keep_alive=False)
    except h11.LocalProtocolError:
        return b""


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    try:
        while True:
            try:
                req, keep_alive = await _read_request(conn, reader, writer)
            except h11.RemoteProtocolError as exc:
                writer.write(_protocol_error(conn, exc))
                await writer.drain()
                return
            try:
                resp = await handler(req)
            except DropConnection:
                return
            writer.write(_encode(conn, resp, keep_alive, head=req.method == "HEAD"))
            await writer.drain()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # MUST_CLOSE (Connection: close, HTTP/1.0) or a client still sending
            conn.start_next_cycle()
    except (_PeerGone, ConnectionError):
        return
    finally:
        writer.close()
