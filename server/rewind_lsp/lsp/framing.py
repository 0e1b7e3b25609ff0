"""The LSP base protocol read strictly, between stdin and pygls.

pygls 2.x reads `Content-Length: N\\r\\n` with an exact regex and then `read(N)` whatever N is: a huge
N ends the server with a MemoryError, a header it does not match (no length, a negative or
non-numeric one, LF-only lines) or a length that does not fit the body leaves it reading past every
later message, and a header line with no newline is buffered whole. Here every frame is checked
first, with bounded memory (headers at most MAX_HEADER bytes, a body at most MAX_BODY), and pygls
gets only well-formed frames, always written the one way its regex reads. A bad frame is dropped and
told to the client (`window/logMessage`, Warning); reading then resumes at the next
`Content-Length:` header, so later well-formed requests are answered.

Only the public reader interface pygls reads from (`readline`, `read`) is used: no pygls internals.
This module is on the start path: only the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import threading
from collections.abc import Callable
from typing import BinaryIO

MAX_HEADER = 8 * 1024  # bytes of one message's header lines
MAX_BODY = 256 * 1024 * 1024  # bytes of one message's body: a 100 MB transcript opened whole is ~130 MB of JSON
# A body that stops arriving this long before its stated length is checked for a header inside it
# (a length larger than the body swallows the next message, and the client then waits for an answer).
STALL_SECONDS = 0.5
_CHUNK = 1 << 16
_HEADER_NAME = b"content-length:"
_HEADER_START = re.compile(rb"content-length:", re.IGNORECASE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_TYPE = b"application/vscode-jsonrpc; charset=utf-8"


class FrameReader:
    """Reads LSP frames from a file descriptor and hands pygls well-formed ones only.

    `readline()` and `read(n)` give each good frame as `Content-Length: N\\r\\n`, `\\r\\n`, then its
    body, and `b""` at the end of input. `report(text)` is called (on the reading thread) for each
    bad frame."""

    def __init__(self, fd: int, report: Callable[[str], None] | None = None) -> None:
        self._fd = fd
        self._buf = bytearray()
        self._eof = False
        self.report = report
        self._lines: list[bytes] = []  # what readline still gives of the current frame
        self._body = b""  # what read still gives of the current frame

    # --- the interface pygls (and early.read_message) reads -------------------------------------

    def readline(self) -> bytes:
        if not self._lines and not self._body:
            body = self.next_body()
            if body is None:
                return b""
            self._lines = [b"Content-Length: %d\r\n" % len(body), b"\r\n"]
            self._body = body
        if self._lines:
            return self._lines.pop(0)
        # pygls reads the body with read(); a reader that asks for lines gets the body whole.
        body, self._body = self._body, b""
        return body

    def read(self, n: int = -1) -> bytes:
        if self._lines:  # never happens with pygls: it reads the headers first
            return b""
        if n < 0 or n >= len(self._body):
            data, self._body = self._body, b""
        else:
            data, self._body = self._body[:n], self._body[n:]
        return data

    def close(self) -> None:
        os.close(self._fd)

    # --- frames -------------------------------------------------------------------------------

    def _fill(self, timeout: float | None = None) -> bool:
        """Read what is there into the buffer (waiting at most `timeout` seconds); False at the end of
        input or when nothing came in time."""
        if self._eof:
            return False
        if timeout is not None:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                return False
        try:
            data = os.read(self._fd, _CHUNK)
        except InterruptedError:
            return True
        except OSError:
            data = b""
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _bad(self, text: str) -> None:
        if self.report is not None:
            with contextlib.suppress(Exception):  # telling the client must never stop the reading
                self.report(f"rewind-lsp: dropped a bad LSP message: {text}")

    def _skip_to_header(self) -> bool:
        """Drop what comes before the next `Content-Length:`; False at the end of input. Memory stays
        bounded: of bytes that hold no header, only a header name's length is kept. Whitespace alone
        (a stray newline) goes unreported."""
        skipped = 0
        junk = False
        while True:
            match = _HEADER_START.search(self._buf)
            cut = match.start() if match is not None else max(0, len(self._buf) - (len(_HEADER_NAME) - 1))
            if match is None and self._eof:
                cut = len(self._buf)
            skipped += cut
            junk = junk or bool(self._buf[:cut].strip())
            del self._buf[:cut]
            if match is not None or not self._fill():
                break
        if junk:
            self._bad(f"{skipped} bytes that are no LSP message")
        return match is not None
    def _header(self) -> tuple[int, bytes] | None:
        """(size of the header part, its bytes) once `\\r\\n\\r\\n` (or `\\n\\n`) ends it; None at the end of
        input or when the header part is over MAX_HEADER (then reported and skipped)."""
        searched = 0
        while True:
            end = _HEADER_END.search(self._buf, max(0, searched - 3))
            if end is not None and end.start() <= MAX_HEADER:
                return end.end(), bytes(self._buf[: end.start()])
            searched = len(self._buf)
            if searched > MAX_HEADER:
                self._bad(f"a header longer than {MAX_HEADER} bytes")
                del self._buf[: len(_HEADER_NAME)]  # past this header's name: on to the next one
                return None
            if not self._fill():
                return None

    def _body_of(self, length: int) -> bytes:
        """The next `length` bytes, or fewer when the body is cut short: at the end of input, or when the
        body stalls with another message's header inside it (its stated length was too large)."""
        while len(self._buf) < length:
            if self._fill(STALL_SECONDS):
                continue
            if self._eof:
                break
            data = bytes(self._buf)
            for match in _HEADER_START.finditer(data):
                if _complete_json(data[: match.start()]):
                    body = data[: match.start()]
                    del self._buf[: match.start()]
                    self._bad(f"Content-Length {length} is larger than its body ({len(body)} bytes)")
                    return body
        body = bytes(self._buf[:length])
        del self._buf[:length]
        return body

    def next_body(self) -> bytes | None:
        """The body of the next well-formed frame; None at the end of input."""
        while True:
            if not self._skip_to_header():
                return None
            header = self._header()
            if header is None:
                if self._eof and not self._buf:
                    return None
                continue
            size, text = header
            length, problem = _content_length(text)
            if problem:
                self._bad(problem)
                del self._buf[: len(_HEADER_NAME)]  # resynchronise on the next header, wherever it is
                continue
            del self._buf[:size]
            body = self._body_of(length)
            if len(body) < length and self._eof:
                self._bad(f"the input ended {length - len(body)} bytes into a body of {length}")
                return None
            if not body.strip():
                self._bad("an empty body")
                continue
            return body


def _content_length(header: bytes) -> tuple[int, str]:
    """The body length a header part states, or a problem with it."""
    lengths = []
    for line in header.split(b"\n"):
        name, colon, value = line.strip().partition(b":")
        if not colon:
            return 0, f"a header line with no colon: {_shown(line)}"
        if name.strip().lower() == b"content-length":
            lengths.append(value.strip())
    if len(lengths) > 1:
        return 0, "more than one Content-Length header"
    value = lengths[0]
    if not value.isdigit():
        return 0, f"Content-Length is no number of bytes: {_shown(value)}"
    length = int(value)
    if length > MAX_BODY:
        return 0, f"Content-Length {length} is over the limit of {MAX_BODY} bytes"
    if length == 0:
        return 0, "Content-Length 0"
    return length, ""


def _complete_json(data: bytes) -> bool:
    """Whether `data` is one whole JSON value (the real body of a frame whose length was too large)."""
    text = data.strip()
    if not text or text[:1] not in (b"{", b"[") or text[-1:] not in (b"}", b"]"):
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _shown(value: bytes, limit: int = 60) -> str:
    text = value[:limit].decode("utf-8", errors="replace")
    return repr(text) + ("…" if len(value) > limit else "")


class LockedWriter:
    """stdout shared by pygls (on the event loop) and the frame reader's reports (on its thread): one
    whole message per write, never two interleaved."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self._lock:
            n = self._stream.write(data)
            self._stream.flush()
            return n

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()

    def close(self) -> None:
        self._stream.close()

    def notify_log(self, text: str) -> None:
        """Send `window/logMessage` (Warning) with `text`."""
        body = json.dumps(
            {"jsonrpc": "2.0", "method": "window/logMessage", "params": {"type": 2, "message": text[:2000]}}
        ).encode()
        self.write(b"Content-Length: %d\r\nContent-Type: %s\r\n\r\n%s" % (len(body), _CONTENT_TYPE, body))
