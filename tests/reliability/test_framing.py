"""Bad LSP frames sent to a real `rewind-lsp serve`: each is dropped and told to the client, the
server stays alive with bounded memory, and the next well-formed request is answered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rel_support import RawServer, raw_server

from rewind_lsp.lsp.framing import MAX_BODY, MAX_HEADER

RSS_LIMIT_KB = 400 * 1024  # far below what buffering the attack would take (gigabytes)


def frame(payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


HOVER = {"jsonrpc": "2.0", "id": "after", "method": "textDocument/hover",
         "params": {"textDocument": {"uri": "file:///nowhere/x.log"}, "position": {"line": 0, "character": 0}}}
BODY = json.dumps({"jsonrpc": "2.0", "method": "$/ignored"}).encode()

BAD_FRAMES = {
    "huge length": b"Content-Length: 99999999999\r\n\r\n" + BODY,
    "no length": b"Content-Type: application/json\r\n\r\n" + BODY,
    "negative length": b"Content-Length: -5\r\n\r\n" + BODY,
    "non-numeric length": b"Content-Length: twelve\r\n\r\n" + BODY,
    "length too short": b"Content-Length: 10\r\n\r\n" + BODY,
    "length too long": b"Content-Length: %d\r\n\r\n" % (len(BODY) + 500) + BODY,
    "header too long": b"Content-Length: 5" + b"x" * (3 * MAX_HEADER) + b"\r\n\r\n" + BODY,
    "junk": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}
REPORTED = {
    "huge length": f"rewind-lsp: dropped a bad LSP message: Content-Length 99999999999 is over the limit of "
                   f"{MAX_BODY} bytes",
    "no length": f"rewind-lsp: dropped a bad LSP message: {len(BODY) + 34} bytes that are no LSP message",
    "negative length": "rewind-lsp: dropped a bad LSP message: Content-Length is no number of bytes: '-5'",
    "non-numeric length": "rewind-lsp: dropped a bad LSP message: Content-Length is no number of bytes: 'twelve'",
    "length too long": f"rewind-lsp: dropped a bad LSP message: Content-Length {len(BODY) + 500} is larger than "
                       f"its body ({len(BODY)} bytes)",
    "header too long": f"rewind-lsp: dropped a bad LSP message: a header longer than {MAX_HEADER} bytes",
    "junk": "rewind-lsp: dropped a bad LSP message: 27 bytes that are no LSP message",
}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def write(srv: RawServer, data: bytes) -> None:
    assert srv.proc.stdin is not None
    srv.proc.stdin.write(data)
    srv.proc.stdin.flush()


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_bad_frame_is_dropped_and_the_next_request_answered(tmp_path: Path, name: str) -> None:
    with raw_server(tmp_path) as srv:
        write(srv, BAD_FRAMES[name] + frame(HOVER))
        reply = srv.response("after", timeout=5)
        assert reply == {"jsonrpc": "2.0", "id": "after", "result": None}
        if name in REPORTED:
            assert REPORTED[name] in srv.log_messages()
        assert srv.proc.poll() is None
        assert rss_kb(srv.proc.pid) < RSS_LIMIT_KB


def test_lf_only_headers_are_read(tmp_path: Path) -> None:
    body = json.dumps(HOVER).encode()
    with raw_server(tmp_path) as srv:
        write(srv, b"content-length: %d\n\n" % len(body) + body)
        assert srv.response("after", timeout=5)["result"] is None


def test_endless_header_line_keeps_memory_bounded(tmp_path: Path) -> None:
    """A header line with no newline (200 MB here) is never buffered whole."""
    with raw_server(tmp_path) as srv:
        write(srv, b"Content-Length: 1")
        chunk = b"9" * (1 << 20)
        for _ in range(200):
            write(srv, chunk)
        before = rss_kb(srv.proc.pid)
        write(srv, b"\r\n\r\n" + frame(HOVER))
        assert srv.response("after", timeout=10)["result"] is None
        assert before < RSS_LIMIT_KB
        assert rss_kb(srv.proc.pid) < RSS_LIMIT_KB
        assert f"rewind-lsp: dropped a bad LSP message: a header longer than {MAX_HEADER} bytes" in srv.log_messages()


def test_body_that_is_no_json_leaves_the_server_serving(tmp_path: Path) -> None:
    with raw_server(tmp_path) as srv:
        write(srv, b"Content-Length: 9\r\n\r\nnot json!" + frame(HOVER))
        assert srv.response("after", timeout=5)["result"] is None
