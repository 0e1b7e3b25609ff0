-- A real terminal log file: the 400 line is flagged, and edits are re-checked.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  local named, other = H.write_sessions()
  H.setup()
  local path = H.write_file(H.work_dir .. "/claude-session.log", {
    "$ claude",
    "> refactor the parser",
    H.line_400,
    "> ",
  })
  local buf = H.open(path)
  local diag

  H.test("log: tool-use-concurrency-400 Error on the 400 line", function()
    diag = H.wait_diagnostic(buf, "tool-use-concurrency-400")
    H.eq(diag.lnum, 2, "line (0-based)")
    H.eq(diag.severity, vim.diagnostic.severity.ERROR, "severity")
    H.eq(diag.source, "rewind-lsp", "source")
    H.eq(#H.diagnostics(buf, "tool-use-concurrency-400"), 1, "number of 400 findings")
  end)

  H.test("log: hover on the 400 line explains it", function()
    H.ok(diag, "needs the diagnostic")
    local text = H.hover_text(buf, diag.lnum, diag.col + 1)
    H.ok(text:find("400", 1, true), "hover text mentions 400: " .. text)
  end)

  H.test("log: code actions include Show fix steps", function()
    H.ok(diag, "needs the diagnostic")
    H.contains(H.titles(H.code_actions(buf, diag)), "Show fix steps", "code action titles")
  end)

  H.test("log: an edited buffer is re-checked (didChange)", function()
    vim.api.nvim_buf_set_lines(buf, -1, -1, false, { "> try again", H.line_400 })
    local last = vim.api.nvim_buf_line_count(buf) - 1
    H.wait(function()
      local lines = vim.tbl_map(function(d) return d.lnum end, H.diagnostics(buf, "tool-use-concurrency-400"))
      table.sort(lines)
      return vim.deep_equal(lines, { 2, last })
    end, "400 findings on lines 3 and " .. (last + 1))
  end)

  H.test("log: logs and transcripts share the client of the watched root", function()
    local client = H.client(buf)
    H.eq(client.config.root_dir, H.claude_dir .. "/projects", "root (the first watched folder)")
    local other = H.open(H.write_file(H.work_dir .. "/other.log", { "nothing to see" }))
    H.eq(H.client(other).id, client.id, "client id of a second log")
    H.eq(H.client(H.open(named)).id, client.id, "client id of a transcript")
    local count = 0
    for _, c in pairs(vim.lsp.get_clients and vim.lsp.get_clients() or vim.lsp.get_active_clients()) do
      count = count + (c.name == "rewind_lsp" and 1 or 0)
    end
    H.eq(count, 1, "rewind-lsp clients")
  end)

  H.test("log: without a watched folder, a client per folder (root_dir option too)", function()
    local rewind = H.setup({ settings = { watchRoots = { H.tmp .. "/missing" } } })
    local a = H.open(H.write_file(H.tmp .. "/a/one.log", { H.line_400 }))
    H.eq(H.client(a).config.root_dir, H.tmp .. "/a", "root of a log outside watched folders")
    rewind.setup({ cmd = H.cmd, root_dir = H.tmp })
    local b = H.open(H.write_file(H.tmp .. "/b/two.log", { H.line_400 }))
    H.eq(H.client(b).config.root_dir, H.tmp, "root from the root_dir option")
    H.wait_diagnostic(b, "tool-use-concurrency-400")
    H.setup()
  end)

  H.test("log: files outside the patterns are left alone", function()
    local txt = H.open(H.write_file(H.work_dir .. "/notes.txt", { H.line_400 }))
    vim.wait(500)
    H.eq(require("rewind_lsp").client_for(txt), nil, "client on notes.txt")
  end)

  H.test("log: :RewindLspRewind rewinds the session named in the log", function()
    local log = H.open(H.write_file(H.work_dir .. "/named.log", { "$ claude --resume " .. H.session_id, H.line_400 }))
    H.wait_diagnostic(log, "tool-use-concurrency-400")
    local target = H.action_target(log, "tool-use-concurrency-400", "Rewind session (drops 2 of 3 messages)")
    H.eq(target, vim.uri_from_fname(named), "session in the Rewind code action")
    H.rewind_named_session(log, named, other)
  end)
end)
