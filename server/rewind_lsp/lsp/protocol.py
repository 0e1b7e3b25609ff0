"""pygls' LSP protocol, made to answer every request, even one whose params do not fit its method, and
to leave open documents to the server. Every override of a pygls internal is in this module (pygls is
pinned to the 2.x line these were written against; tests/lsp/test_protocol_overrides.py holds them).

Open documents: pygls' own didOpen/didChange/didClose handlers keep each document in its workspace and,
on every incremental change, split the whole text into lines (a second per keystroke, or per appended
line, on a 100 MB transcript, on the event loop). Here they only hand the notification to the server's
handler; the server keeps the text itself (lsp/documents.py).

pygls 2.x turns each incoming message into lsprotocol types inside `json.loads(object_hook=...)`; a
message that does not fit (a number for a uri, no params, `range: 3`) raises out of the parse, before
pygls knows the request's id, so the request is never answered and the client waits forever. Here
the failure becomes a placeholder message, and the placeholder is answered (or dropped) by id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from typing import Any

from cattrs.errors import ClassValidationError
from cattrs.v import transform_error
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest
from pygls.protocol import LanguageServerProtocol, lsp_method

from .early import EarlyAnswer, is_id

log = logging.getLogger(__name__)


class Unstructured:
    """A message whose params did not fit its method's types (see `RewindProtocol.structure_message`).
    A plain class, not a dataclass: this module is on the server's start path."""

    __slots__ = ("data", "reason")

    def __init__(self, data: dict[str, Any], reason: str) -> None:
        self.data = data
        self.reason = reason

    @property
    def method(self) -> Any:
        return self.data.get("method")


def _answers(data: Any, msg_id: int | str) -> bool:
    """Is `data` (a message about to be sent) the response to request `msg_id`?"""
    if isinstance(data, dict):
        return data.get("id") == msg_id and "method" not in data
    return getattr(data, "id", None) == msg_id and not hasattr(data, "method")


def _reason(exc: BaseException) -> str:
    """Where the params went wrong ("required field missing @ $.params"): enough for the client's log,
    never a whole traceback."""
    cause = exc.__cause__ or exc
    if isinstance(cause, ClassValidationError):
        problems = transform_error(cause)
        return "; ".join(problems[:3])[:300] + ("; …" if len(problems) > 3 else "")
    text = str(cause).strip().splitlines()
    return text[0][:300] if text else type(cause).__name__


class RewindProtocol(LanguageServerProtocol):
    # The `initialize` already answered by `early` (None: none was): pygls's own answer is dropped.
    early_answer: EarlyAnswer | None = None

    def _to_user(self, method: str, params: Any) -> Generator[Any, Any, None]:
        """pygls' builtin handler protocol: yield (handler, args, kwargs) to have the user's handler run."""
        if (handler := self.fm.features.get(method)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Generator[Any, Any, None]:
        yield from self._to_user(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        yield from self._to_user(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Generator[Any, Any, None]:
        yield from self._to_user(types.TEXT_DOCUMENT_DID_CLOSE, params)

    def _send_data(self, data: Any) -> None:
        early = self.early_answer
        if early is not None and _answers(data, early.msg_id):
            self.early_answer = None
            mine = json.loads(json.dumps(data, default=self._serialize_message))
            if mine.get("result") != early.result:
                # The tests keep the two equal; should they part, say so where it can be seen.
                text = f"rewind-lsp: initialize was answered early with other capabilities than pygls computes: {mine}"
                log.error("%s (answered: %s)", text, early.result)
                self.notify(types.WINDOW_LOG_MESSAGE, types.LogMessageParams(types.MessageType.Error, text[:2000]))
            return
        super()._send_data(data)

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            # object_hook runs on nested objects too, but super() hands those back (no "jsonrpc" key):
            # what fails here is a message.
            try:
                reason = _reason(exc)
            except Exception:  # describing the failure must never fail the answer
                reason = "the params do not fit the method"
            return Unstructured(data, reason)

    def handle_message(self, message: Any) -> None:
        if isinstance(message, Unstructured):
            self.handle_unstructured(message)
        else:
            super().handle_message(message)

    def handle_unstructured(self, message: Unstructured) -> None:
        data = message.data
        name = str(message.method)[:100]  # a hostile method name may be megabytes long
        if "method" in data and "id" in data:  # a request: it gets an answer
            msg_id = data["id"]
            if is_id(msg_id):
                error = JsonRpcInvalidParams(f"Invalid params for {name}: {message.reason}")
                self._send_response(msg_id, error=error.to_response_error())
            else:
                # An id that is no id cannot be echoed: JSON-RPC answers with id null. Written raw,
                # because lsprotocol's ResponseErrorMessage leaves a None id out.
                invalid = JsonRpcInvalidRequest(f"Invalid request id for {name}")
                self._send_data(
                    {"jsonrpc": "2.0", "id": None, "error": {"code": invalid.code, "message": invalid.message}}
                )
            log.warning("answered %s with an error: %s", name, message.reason)
        elif "id" in data:  # the client's answer to one of our requests: fail that request, never hang on it
            future = self._request_futures.pop(data["id"], None) if is_id(data["id"]) else None
            if future is not None and not future.done():
                future.set_exception(JsonRpcInvalidParams(f"unreadable response: {message.reason}"))
            log.warning("dropped an unreadable response to %r: %s", data["id"], message.reason)
        else:  # a notification: nobody waits for an answer; say so in the client's log, drop it
            text = f"rewind-lsp: ignored a {name} notification with invalid params: {message.reason}"
            log.warning("%s", text)
            self.notify(types.WINDOW_LOG_MESSAGE, types.LogMessageParams(types.MessageType.Warning, text))
