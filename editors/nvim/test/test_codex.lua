-- A real broken Codex CLI rollout under $CODEX_HOME/sessions: the default
-- watched roots, the diagnostic at the call, hover, code actions, Repair
-- writing a new rollout for `codex resume`, the resume command copied.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

local codex_home = H.tmp .. "/codex"
vim.env.CODEX_HOME = codex_home
local session_id = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
local call_id = "call_0002abcdEFGHfu"
-- function_call call_0002abcdEFGHfu (line 3) never gets its output.
local lines = {
  '{"timestamp":"2026-11-30T10:00:00.000Z","type":"session_meta","payload":{"id":"' .. session_id .. '","timestamp":"2026-11-30T10:00:00.000Z","cwd":"' .. H.work_dir .. '","originator":"codex_cli_rs","cli_version":"0.63.0","instructions":null}}',
  '{"timestamp":"2026-11-30T10:00:01.000Z","type":"response_item","payload":{"type":"message","role":"user","content":[{"type":"input_text","text":"list the files"}]}}',
  '{"timestamp":"2026-11-30T10:00:02.000Z","type":"response_item","payload":{"type":"function_call","name":"shell","arguments":"{\\"command\\":[\\"ls\\"]}","call_id":"' .. call_id .. '"}}',
  '{"timestamp":"2026-11-30T10:00:03.000Z","type":"response_item","payload":{"type":"message","role":"user","content":[{"type":"input_text","text":"hello?"}]}}',
}

H.run(function()
  local sessions = codex_home .. "/sessions"
  local path = H.write_file(("%s/2026/11/30/rollout-2026-11-30T10-00-00-%s.jsonl"):format(sessions, session_id), lines)
  local rewind = H.setup()
  local original = H.read_bytes(path)
  local buf = H.open(path)
  local diag

  H.test("codex: the default watched roots end with $CODEX_HOME/sessions once it exists", function()
    local roots = rewind.watch_roots()
    H.eq(roots[#roots], sessions, "last watched root: " .. vim.inspect(roots))
  end)

  H.test("codex: codex-orphan-call Error on line 3 at the function_call item", function()
    diag = H.wait_diagnostic(buf, "codex-orphan-call")
    H.eq(diag.lnum, 2, "line (0-based)")
    H.eq(diag.col, lines[3]:find('{"type":"function_call"', 1, true) - 1, "column of the payload's {")
    H.eq(diag.severity, vim.diagnostic.severity.ERROR, "severity")
    H.eq(diag.message, "function_call " .. call_id .. " has no function_call_output after it. The Responses API "
      .. 'refuses the history: "No tool output found for function call ' .. call_id .. '."', "message")
  end)

  H.test("codex: hover names the rule and the call", function()
    H.ok(diag, "needs the diagnostic")
    local text = H.hover_text(buf, diag.lnum, diag.col + 2)
    H.ok(text:find("Codex: a tool call without its output", 1, true), "hover text: " .. text)
    H.ok(text:find(call_id, 1, true), "hover text: " .. text)
  end)

  H.test("codex: the outline lists the prompts and the unanswered call; the hint says it has no output", function()
    local symbols = H.request(buf, "textDocument/documentSymbol", { textDocument = { uri = vim.uri_from_bufnr(buf) } })
    local names = vim.tbl_map(function(s) return s.name end, symbols)
    H.eq(names, { "list the files", "hello?" }, "top-level symbols")
    H.eq(vim.tbl_map(function(c) return c.name .. " | " .. c.detail end, symbols[1].children or {}),
      { "shell ls ✗ | " .. call_id .. " · no output" }, "children of the first prompt")
    local hints = H.request(buf, "textDocument/inlayHint", { textDocument = { uri = vim.uri_from_bufnr(buf) },
      range = { start = { line = 0, character = 0 }, ["end"] = { line = #lines, character = 0 } } })
    H.eq(vim.tbl_map(function(h) return { h.position.line, h.label } end, hints),
      { { 2, "✗ " .. call_id .. ": no output" } }, "inlay hints")
  end)

  H.test("codex: code actions offer the contract's titles", function()
    H.ok(diag, "needs the diagnostic")
    local titles = H.titles(H.code_actions(buf, diag))
    for _, title in ipairs({ "Show fix steps", "Repair session (keeps everything)", "Copy resume command" }) do
      H.contains(titles, title, "code action titles")
    end
  end)

  H.test("codex: :RewindLspRepair writes a new rollout beside the original, for codex resume", function()
    vim.cmd("buffer " .. buf)
    rewind.last_result = nil
    vim.fn.setreg('"', "")
    vim.cmd("RewindLspRepair")
    local result = H.wait(function() return rewind.last_result end, "the rewind-lsp.repair result")
    H.ok(type(result.path) == "string" and result.path ~= path, "result.path: " .. vim.inspect(result))
    H.eq(vim.fn.fnamemodify(result.path, ":h"), vim.fn.fnamemodify(path, ":h"), "folder of the new rollout")
    local name = vim.fn.fnamemodify(result.path, ":t")
    local id = name:match("^rollout%-%d%d%d%d%-%d%d%-%d%dT%d%d%-%d%d%-%d%d%-(" .. ("[0-9a-f-]"):rep(36) .. ")%.jsonl$")
    H.ok(id and id ~= session_id, "a new rollout name: " .. name)
    H.eq(result.sessionId, id, "sessionId")
    H.eq(result.resumeCommand, "cd " .. H.work_dir .. " && codex resume " .. id, "resumeCommand")
    H.eq(vim.fn.getreg('"'), result.resumeCommand, "resume command copied to the unnamed register")
    local code, output = H.server_check(result.path)
    H.eq(code, 0, "exit status of `rewind-lsp check " .. result.path .. "` (" .. vim.trim(output) .. ")")
    local text = H.read_bytes(result.path)
    H.ok(text:find('"call_id":"' .. call_id .. '","output":"aborted"', 1, true)
      or text:find('"output":"aborted","call_id":"' .. call_id .. '"', 1, true), "the aborted output: " .. text)
    H.ok(H.read_bytes(path) == original, "original rollout is byte-identical")
  end)
end)
