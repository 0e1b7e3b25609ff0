-- A real broken transcript: diagnostic, hover, code actions, Rewind, Repair.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  local rewind = H.setup()
  local path = H.write_transcript()
  local original = H.read_bytes(path)
  local buf = H.open(path)
  local tool_use_col = H.transcript_lines[2]:find('{"type":"tool_use"', 1, true) - 1
  local diag

  H.test("transcript: orphan-tool-use Error on line 2 at the tool_use block", function()
    diag = H.wait_diagnostic(buf, "orphan-tool-use")
    H.eq(diag.lnum, 1, "line (0-based)")
    H.eq(diag.col, tool_use_col, "column of the tool_use block's {")
    H.eq(diag.severity, vim.diagnostic.severity.ERROR, "severity")
    H.eq(diag.source, "rewind-lsp", "source")
    local lsp = diag.user_data and diag.user_data.lsp or {}
    local href = lsp.codeDescription and lsp.codeDescription.href
    H.ok(href and vim.startswith(href, "file://"), "codeDescription.href is a file:// URI: " .. vim.inspect(href))
    H.ok(vim.loop.fs_stat(vim.uri_to_fname(href)), "fix page exists: " .. tostring(href))
  end)

  H.test("transcript: one client per root, reused for a second transcript", function()
    local client = H.client(buf)
    local second = H.write_file(vim.fn.fnamemodify(path, ":h") .. "/22222222-2222-4222-8222-222222222222.jsonl",
      { H.transcript_lines[1] })
    local buf2 = H.open(second)
    H.eq(H.client(buf2).id, client.id, "client id of the second transcript")
    H.eq(client.config.root_dir, H.claude_dir .. "/projects", "root of transcripts (the watched projects folder)")
    vim.cmd("buffer " .. buf)
  end)

  H.test("transcript: hover names toolu_01ABC", function()
    H.ok(diag, "needs the diagnostic")
    local text = H.hover_text(buf, diag.lnum, diag.col + 2)
    H.ok(text:find("toolu_01ABC", 1, true), "hover text: " .. text)
  end)

  H.test("transcript: code actions (quickfix) offer the contract's titles", function()
    H.ok(diag, "needs the diagnostic")
    local actions = H.code_actions(buf, diag)
    local titles = H.titles(actions)
    for _, title in ipairs({ "Show fix steps", "Rewind session (drops 2 of 3 messages)", "Repair session (keeps everything)", "Copy resume command" }) do
      H.contains(titles, title, "code action titles")
    end
    for _, action in ipairs(actions) do
      H.eq(action.kind, "quickfix", action.title .. " kind")
    end
  end)

  H.test("transcript: :RewindLspCopyResume before any repair copies nothing", function()
    rewind.last_result = nil
    vim.fn.setreg('"', "untouched")
    vim.cmd("RewindLspCopyResume")
    local result = H.wait(function() return rewind.last_result end, "the copyResumeCommand result")
    -- JSON null: Neovim's LSP decoder turns null members into nil
    H.ok(result.resumeCommand == nil or result.resumeCommand == vim.NIL, "resumeCommand: " .. vim.inspect(result))
    H.ok(type(result.rewindCommand) == "string", "rewindCommand: " .. vim.inspect(result))
    H.eq(vim.fn.getreg('"'), "untouched", "unnamed register")
  end)

  H.test("transcript: Rewind code action writes a new session beside the original", function()
    rewind.last_result = nil
    vim.api.nvim_win_set_cursor(0, { diag.lnum + 1, diag.col })
    local messages = {}
    local notify = vim.notify
    vim.notify = function(msg, ...)
      table.insert(messages, msg)
      return notify(msg, ...)
    end
    H.choose_code_action("Rewind session (drops 2 of 3 messages)")
    local result = H.wait(function() return rewind.last_result end, "the rewind-lsp.rewind result")
    if vim.fn.has("nvim-0.10") == 1 then -- older versions echo showMessage without vim.notify
      H.wait(function() return #messages > 0 end, "the server's message")
    end
    vim.wait(300)
    vim.notify = notify
    local resume_lines = vim.tbl_filter(function(m) return m:find("claude --resume", 1, true) ~= nil end, messages)
    H.eq(#resume_lines, vim.fn.has("nvim-0.10") == 1 and 1 or 0, "messages naming the resume command: " .. vim.inspect(messages))
    H.ok(type(result.path) == "string", "result.path: " .. vim.inspect(result))
    H.eq(vim.fn.fnamemodify(result.path, ":h"), vim.fn.fnamemodify(path, ":h"), "folder of the new session")
    H.ok(result.path ~= path and vim.fn.filereadable(result.path) == 1, "new session file exists: " .. result.path)
    H.eq(vim.fn.fnamemodify(result.path, ":t"), result.sessionId .. ".jsonl", "new file name")
    H.eq(result.resumeCommand, "claude --resume " .. result.sessionId, "resumeCommand")
    H.eq(vim.fn.getreg('"'), result.resumeCommand, "resume command copied to the unnamed register")
    local code, output = H.server_check(result.path)
    H.eq(code, 0, "exit status of `rewind-lsp check " .. result.path .. "` (" .. vim.trim(output) .. ")")
    H.ok(H.read_bytes(path) == original, "original transcript is byte-identical")
    -- window/showDocument (takeFocus false) shows the new file in a split
    -- and leaves the cursor in the transcript (0.7: the plugin's handler).
    H.wait(function() return vim.fn.bufwinid(result.path) ~= -1 end, "a window showing " .. result.path)
    H.eq(vim.api.nvim_get_current_buf(), buf, "current buffer after showDocument")
  end)

  H.test("transcript: :RewindLspRepair writes a patched session", function()
    vim.cmd("buffer " .. buf)
    rewind.last_result = nil
    vim.cmd("RewindLspRepair")
    local result = H.wait(function() return rewind.last_result end, "the rewind-lsp.repair result")
    H.ok(type(result.path) == "string" and result.path ~= path, "result.path: " .. vim.inspect(result))
    H.eq(vim.fn.fnamemodify(result.path, ":h"), vim.fn.fnamemodify(path, ":h"), "folder of the repaired session")
    local code, output = H.server_check(result.path)
    H.eq(code, 0, "exit status of `rewind-lsp check` on the repaired session (" .. vim.trim(output) .. ")")
    H.ok(H.read_bytes(path) == original, "original transcript is byte-identical")
  end)

  H.test("transcript: :RewindLspShowFix sends the rule id under the cursor", function()
    vim.cmd("buffer " .. buf)
    vim.api.nvim_win_set_cursor(0, { diag.lnum + 1, diag.col + 1 })
    H.eq(rewind.rule_under_cursor(), "orphan-tool-use", "rule under the cursor")
    local sent
    local client = rewind.client_for(buf)
    local orig_request = client.request
    local function spy(method, params)
      if method == "workspace/executeCommand" then
        sent = params
      end
    end
    if vim.fn.has("nvim-0.11") == 1 then
      client.request = function(self, method, params, ...) spy(method, params) return orig_request(self, method, params, ...) end
    else
      client.request = function(method, params, ...) spy(method, params) return orig_request(method, params, ...) end
    end
    rewind.last_result = nil
    vim.cmd("RewindLspShowFix")
    client.request = orig_request
    H.eq(sent, { command = "rewind-lsp.showFix", arguments = { "orphan-tool-use" } }, "executeCommand params")
    -- The server shows the rule's fix page (window/showDocument, takeFocus).
    local result = H.wait(function() return rewind.last_result end, "the showFix result")
    local page = vim.uri_to_fname(result.uri)
    H.ok(vim.loop.fs_stat(page), "fix page exists: " .. page)
    H.wait(function() return vim.api.nvim_buf_get_name(0) == page end, "the fix page in the current window")
  end)

  H.test("transcript: :RewindLspCopyResume copies the resume command", function()
    vim.cmd("buffer " .. buf)
    rewind.last_result = nil
    vim.fn.setreg('"', "")
    vim.cmd("RewindLspCopyResume")
    local result = H.wait(function() return rewind.last_result end, "the copyResumeCommand result")
    H.ok(type(result.resumeCommand) == "string" and result.resumeCommand:find("^claude %-%-resume "),
      "resumeCommand: " .. vim.inspect(result))
    H.eq(vim.fn.getreg('"'), result.resumeCommand, "unnamed register")
  end)
end)
