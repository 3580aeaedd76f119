"""The HTTP/1.1 layer on raw sockets: chunked bodies, pipelining, `Connection: close`, HTTP/1.0, HEAD,
`Expect: 100-continue`, malformed and oversized requests, and a client closing mid-body.

Responses are read with the small reader below, not with the server's own code."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

AUTH = "Authorization: Bearer sk_test_http\r\n"


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=5)


def _read_response(fh: Any) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one Content-Length framed response."""
    status_line = fh.readline()
    assert status_line, "connection closed before a response"
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while (line := fh.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = fh.read(int(headers.get("content-length", "0")))
    return status, headers, body


def _create(url: str, name: str) -> str:
    resp = requests.post(
        f"{url}/v1/products", data={"name": name}, headers={"Authorization": "Bearer sk_test_http"}, timeout=5
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def test_chunked_request_body_is_read_whole(emulator) -> None:
    def body() -> Iterator[bytes]:
        yield b"name=Chunked+"
        yield b"poster&metadata[cms_id]="
        yield b"c-1"

    # A generator body makes requests send Transfer-Encoding: chunked.
    resp = requests.post(
        f"{emulator.url}/v1/products",
        data=body(),
        headers={"Authorization": "Bearer sk_test_http", "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "Chunked poster"
    assert resp.json()["metadata"] == {"cms_id": "c-1"}


def test_pipelined_requests_are_answered_in_order_on_one_connection(emulator) -> None:
    first, second = _create(emulator.url, "first"), _create(emulator.url, "second")
    opened = emulator.inspect()["connections_opened"]
    with _connect(emulator.url) as sock, sock.makefile("rb") as fh:
        sock.sendall(
            f"GET /v1/products/{second} HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n"
            f"GET /v1/products/{first} HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n".encode()
        )
        answers = [_read_response(fh) for _ in range(2)]
    assert [(s, json.loads(b)["name"]) for s, _, b in answers] == [(200, "second"), (200, "first")]
    assert [h["connection"] for _, h, _ in answers] == ["keep-alive", "keep-alive"]
    assert emulator.inspect()["connections_opened"] == opened + 1


def test_connection_close_is_honoured(emulator) -> None:
    with _connect(emulator.url) as sock, sock.makefile("rb") as fh:
        sock.sendall(f"GET /v1/products HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{AUTH}\r\n".encode())
        status, headers, body = _read_response(fh)
        assert (status, headers["connection"]) == (200, "close")
        assert json.loads(body)["object"] == "list"
        assert fh.read() == b""  # the server closed its end


def test_http_1_0_request_is_answered_then_closed(emulator) -> None:
    with _connect(emulator.url) as sock, sock.makefile("rb") as fh:
        sock.sendall(f"GET /v1/products HTTP/1.0\r\n{AUTH}\r\n".encode())
        status, headers, _ = _read_response(fh)
        assert (status, headers["connection"]) == (200, "close")
        assert fh.read() == b""


def test_head_request_gets_headers_without_a_body_and_the_connection_stays_usable(emulator) -> None:
    with _connect(emulator.url) as sock, sock.makefile("rb") as fh:
        sock.sendall(f"HEAD /v1/products HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n".encode())
        status_line = fh.readline()
        headers = []
        while (line := fh.readline()) not in (b"\r\n", b""):
            headers.append(line.split(b":", 1)[0].lower())
        # Stripe has no HEAD route (404), and the answer to a HEAD carries no body.
        assert status_line == b"HTTP/1.1 404 Not Found\r\n"
        assert b"content-length" in headers
        sock.sendall(f"GET /v1/products HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n".encode())
        status, _, body = _read_response(fh)
    assert (status, json.loads(body)["object"]) == (200, "list")


def test_expect_100_continue_gets_an_interim_response_before_the_body(emulator) -> None:
    body = b"name=Continued"
    with _connect(emulator.url) as sock, sock.makefile("rb") as fh:
        sock.sendall(
            f"POST /v1/products HTTP/1.1\r\nHost: x\r\n{AUTH}Expect: 100-continue\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        assert fh.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert fh.readline() == b"\r\n"
        sock.sendall(body)
        status, _, payload = _read_response(fh)
    assert (status, json.loads(payload)["name"]) == (200, "Continued")


def test_malformed_request_gets_400_and_a_closed_connection(emulator) -> None:
    with _connect(emulator.url) as sock, sock.makefile("rb") as fh:
        sock.sendall(b"this is not http\r\n\r\n")
        status, headers, body = _read_response(fh)
        assert (status, headers["connection"]) == (400, "close")
        assert json.loads(body)["error"]["type"] == "invalid_request_error"
        assert fh.read() == b""
    assert emulator.inspect()["requests_total"] == 0  # never reached the Stripe pipeline


def test_request_head_over_128_kib_gets_431(emulator) -> None:
    with _connect(emulator.url) as sock, sock.makefile("rb") as fh:
        sock.sendall(f"GET /v1/products HTTP/1.1\r\nHost: x\r\n{AUTH}X-Big: {'a' * 140_000}\r\n\r\n".encode())
        status, headers, body = _read_response(fh)
    assert (status, headers["connection"]) == (431, "close")
    assert json.loads(body)["error"]["message"] == "Request headers too large"


def test_client_closing_mid_body_applies_nothing_and_the_server_carries_on(emulator) -> None:
    with _connect(emulator.url) as sock, sock.makefile("rb") as fh:
        sock.sendall(
            f"POST /v1/products HTTP/1.1\r\nHost: x\r\n{AUTH}"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=half".encode()
        )
        sock.shutdown(socket.SHUT_WR)  # EOF 9 bytes into a 100-byte body
        status, headers, _ = _read_response(fh)
        assert (status, headers["connection"]) == (400, "close")
        assert fh.read() == b""  # the server is done with this connection
    assert emulator.inspect()["requests_total"] == 0
    assert emulator.objects()["products"] == []
    assert _create(emulator.url, "after").startswith("prod_")
