"""The exec transport: one exec's hijacked socket, stdin in and the multiplexed output out.

Docker (and Podman) answer `exec start` by upgrading the HTTP connection to a raw stream: the
command's stdin goes in, its stdout and stderr come back in frames (`FrameDemuxer`).
"""

from __future__ import annotations

import selectors
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

_CHUNK = 65536
_FRAME_HEADER = struct.Struct(">BxxxL")


class FrameDemuxer:
    """Splits Docker's multiplexed attach stream (8-byte header: stream, 0, 0, 0, size BE)."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self.stdout = bytearray()
        self.stderr = bytearray()

    def feed(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= _FRAME_HEADER.size:
            stream, size = _FRAME_HEADER.unpack_from(self._pending)
            end = _FRAME_HEADER.size + size
            if len(self._pending) < end:
                return
            payload = self._pending[_FRAME_HEADER.size : end]
            # 0 (stdin echo) and 1 are output; 2 is stderr, 3 the engine's own error stream.
            (self.stdout if stream in (0, 1) else self.stderr).extend(payload)
            del self._pending[:end]

    @property
    def truncated(self) -> bool:
        """True when the stream ended inside a frame."""
        return bool(self._pending)



def _raw_socket(sock: Any) -> Any:
    # Over unix/tcp the SDK returns the SocketIO wrapper of the real socket.
    return getattr(sock, "_sock", sock)


def _buffered_output(sock: Any) -> bytes:
    """Bytes the HTTP layer already read past the upgrade response's headers, if any.

    http.client reads headers through a buffered reader, which can swallow the first frames;
    with the socket non-blocking, peek() returns only what is buffered.
    """
    try:
        reader = sock._response.raw._fp.fp
        return bytes(reader.peek())
    except (AttributeError, OSError, ValueError):
        return b""


def pump(sock: Any, stdin: bytes | None, deadline: float) -> FrameDemuxer:
    """Sends stdin (then half-closes) while reading frames until EOF, all before `deadline`.

    One selector loop rather than write-then-read: a command that writes a lot before it has
    read all its stdin would otherwise deadlock against us.
    """
    raw = _raw_socket(sock)
    raw.setblocking(False)
    demux = FrameDemuxer()
    demux.feed(_buffered_output(sock))
    to_send = memoryview(stdin) if stdin is not None else None
    sent = 0
    with selectors.DefaultSelector() as sel:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if to_send is not None else 0)
        sel.register(raw, events)
        if to_send is not None and len(to_send) == 0:
            _finish_stdin(sel, raw)
            to_send = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            for _key, mask in sel.select(remaining):
                if mask & selectors.EVENT_WRITE and to_send is not None:
                    try:
                        sent += raw.send(to_send[sent : sent + _CHUNK])
                    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        pass
                    except OSError:  # the command exited without reading all of stdin
                        sent = len(to_send)
                    if sent >= len(to_send):
                        _finish_stdin(sel, raw)
                        to_send = None
                if mask & selectors.EVENT_READ and not _drain(raw, demux):
                    return demux


def _drain(raw: Any, demux: FrameDemuxer) -> bool:
    """Reads what is available into `demux`; False at end of stream.

    TLS keeps decrypted bytes of a record the selector no longer sees (`pending()`), so read
    until it is empty, or the loop would wait for data that already arrived.
    """
    while True:
        try:
            data = raw.recv(_CHUNK)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True
        if not data:
            return False
        demux.feed(data)
        if not (isinstance(raw, ssl.SSLSocket) and raw.pending()):
            return True


def _finish_stdin(sel: selectors.BaseSelector, raw: Any) -> None:
    """Half-close: the command sees EOF on stdin while we keep reading its output."""
    sel.modify(raw, selectors.EVENT_READ)
    with suppress(OSError):
        raw.shutdown(socket.SHUT_WR)


def close_stream(sock: Any) -> None:
    # The wrapper, the HTTP response and the socket all hold the connection; close each once.
    for closable in (getattr(sock, "_response", None), sock, _raw_socket(sock)):
        if closable is not None:
            with suppress(OSError, ValueError):
                closable.close()


_INSPECT_POLLS = 500  # x 10 ms: a loaded engine gets 5 s to record the exit code
_INSPECT_POLL_INTERVAL = 0.01


def start_exec(api: Any, container: str, argv: Sequence[str], stdin: bool) -> tuple[str, Any]:
    """Create an exec (stdout and stderr, stdin when asked) and start it: its id and the
    hijacked socket that `pump` reads."""
    exec_id = api.exec_create(container, list(argv), stdin=stdin, stdout=True, stderr=True)["Id"]
    return exec_id, api.exec_start(exec_id, socket=True)


def exit_code(api: Any, exec_id: str) -> int | None:
    """The exec's exit code once the engine recorded it (it lags the end of the output a
    little), None if it never did within the polls."""
    for _ in range(_INSPECT_POLLS):
        state = api.exec_inspect(exec_id)
        if not state.get("Running") and state.get("ExitCode") is not None:
            return int(state["ExitCode"])
        time.sleep(_INSPECT_POLL_INTERVAL)
    return None
