"""Drive the real server over stdio with pytest-lsp, in the capability profiles of real clients."""

from __future__ import annotations

import asyncio
from typing import Union

import pytest_lsp
from lsp_support import ENV, LOG_DIR, PROFILES, PROJECTS, ROOT, SERVER
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER, server_env=ENV), params=PROFILES)
async def client(lsp_client: LanguageClient, request):  # type: ignore[no-untyped-def]
    answers: list[str] = []
    lsp_client.message_requests = []  # type: ignore[attr-defined]
    lsp_client.answers = answers  # type: ignore[attr-defined]

    @lsp_client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
    def show_message_request(params: types.ShowMessageRequestParams) -> types.MessageActionItem | None:
        lsp_client.message_requests.append(params)  # type: ignore[attr-defined]
        title = answers.pop(0) if answers else "Ignore"
        return types.MessageActionItem(title=title)

    # lsprotocol's client-side converter reads every CodeAction as a Command (its union hook
    # keys on the "command" field); teach it the shape the protocol defines.
    conv = lsp_client.protocol._converter

    def command_or_action(obj: dict, _: object) -> types.Command | types.CodeAction:
        if isinstance(obj.get("command"), str):
            return conv.structure(obj, types.Command)
        return conv.structure(obj, types.CodeAction)

    conv.register_structure_hook(Union[types.Command, types.CodeAction], command_or_action)  # noqa: UP007

    caps = client_capabilities(request.param)
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=caps,
            workspace_folders=[types.WorkspaceFolder(uri=ROOT.as_uri(), name="root")],
            initialization_options={"watchRoots": [str(PROJECTS), str(LOG_DIR)]},
        )
    )
    # `initialize` is answered before the server has loaded (rewind_lsp.lsp.early), and `initialized`
    # is handled concurrently with later requests. Its end is when the watcher runs, which the server
    # says: every test starts from a loaded server that sees every change of the files it writes.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not any("rewind-lsp: watching" in m.message for m in lsp_client.log_messages):
        assert loop.time() < deadline, "the server never said it was watching"
        await asyncio.sleep(0.01)
    yield
    await lsp_client.shutdown_session()
