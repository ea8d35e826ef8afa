"""Builders of hostile inputs for tests/security (each made at test time; nothing from ../shared)."""

from __future__ import annotations

import hashlib
import socket
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper


def relu4d() -> onnx.ModelProto:
    """Y = Relu(X), X float32 [N, C, H, W] all symbolic: any --shape is accepted, so only size checks stop it."""
    g = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "relu4d",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", "C", "H", "W"])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", "C", "H", "W"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def nested_if_bytes(depth: int) -> bytes:
    """A protobuf bomb: a model whose graph nests ``depth`` If nodes (then_branch in then_branch ...),
    written byte by byte (protobuf itself refuses to build messages nested this deep)."""
    graph = _field(2, b"leaf")
    for _ in range(depth):
        attr = _field(1, b"then_branch") + _varint(20 << 3) + _varint(5) + _field(6, graph)
        node = _field(1, b"cond") + _field(2, b"o") + _field(4, b"If") + _field(5, attr)
        graph = _field(1, node) + _field(2, b"g")
    opset = _varint(2 << 3) + _varint(17)
    return _varint(1 << 3) + _varint(8) + _field(8, opset) + _field(7, graph)


def zip_with(path: Path, entries: list[tuple[str, bytes]], *, symlink: tuple[str, str] | None = None) -> Path:
    """A .zip holding ``entries`` (names written verbatim, even ``../x``) and optionally a symlink entry."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink[0])
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, symlink[1])
    return path


def db_fingerprint(url: str, home: Path) -> str:
    """SHA-256 over every row of models/jobs/runs and every file under ENGINESCOPE_HOME/models."""
    from sqlalchemy import create_engine, text

    h = hashlib.sha256()
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            for table in ("models", "jobs", "runs", "artifacts"):
                for row in c.execute(text(f"SELECT * FROM {table} ORDER BY id")):  # noqa: S608 - fixed names
                    h.update(repr(tuple(row)).encode())
    finally:
        eng.dispose()
    for p in sorted((home / "models").rglob("*")):
        h.update(str(p.relative_to(home)).encode())
        if p.is_file():
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# A hostile HTTP server: one scripted response per connection (then the connection closes)

SSE_OK = (b'data: {"choices":[{"text":"a"}]}\n\n'
          b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\ndata: [DONE]\n\n')


def _response(mode: str) -> tuple[bytes, bytes, float]:
    """(head, body, then-stream-forever interval) of a hostile response ``mode``."""
    sse = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
    if mode == "not_sse":
        body = b'{"id":"x","object":"text_completion","choices":[{"text":"hello"}]}'
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + \
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode(), body, 0
    if mode == "html":
        body = b"<html><body>502 proxy says hello</body></html>"
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n" + \
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode(), body, 0
    if mode == "malformed_json":
        return sse + b"\r\n", b'data: {"choices":[{"text":"a"\n\n' + SSE_OK, 0
    if mode == "wrong_types":
        return sse + b"\r\n", (b'data: {"choices":"abc","usage":5}\n\ndata: {"choices":[7]}\n\n'
                               b'data: [1,2]\n\ndata: {"choices":[{"delta":"x","text":["y"]}],"usage":'
                               b'{"completion_tokens":"many"}}\n\n' + SSE_OK), 0
    if mode == "length_lie_long":  # promises 100000 bytes, sends a little, closes
        return sse.replace(b"Connection: close\r\n", b"Content-Length: 100000\r\nConnection: close\r\n") + b"\r\n", \
            b'data: {"choices":[{"text":"a"}]}\n\n', 0
    if mode == "length_lie_short":  # the length cuts the first event's JSON in half
        return sse.replace(b"Connection: close\r\n", b"Content-Length: 20\r\nConnection: close\r\n") + b"\r\n", \
            SSE_OK, 0
    if mode == "forever":  # SSE comments every 50 ms, never an event, never the end
        return sse + b"\r\n", b": keep-alive\n\n", 0.05
    if mode == "bad_status_line":
        return b"HTTP/1.1 OK-ish\r\nContent-Length: 2\r\n\r\n", b"{}", 0
    raise ValueError(mode)


@contextmanager
def hostile_server(mode: str) -> Iterator[str]:
    """A thread serving ``mode`` to every connection on 127.0.0.1; yields its base URL."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            head, body, every = _response(mode)
            conn.sendall(head + body)
            while every and not stop.is_set():
                time.sleep(every)
                conn.sendall(body)
        except OSError:
            pass
        finally:
            conn.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        srv.close()


def fake_tokenizer(text: str, add_special_tokens: bool = True) -> dict[str, Any]:
    """Whitespace tokenizer: one token per word (the dataset loader takes any callable of this shape)."""
    return {"input_ids": text.split()}
