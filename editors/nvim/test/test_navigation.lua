-- The transcript as a document: outline, a jump, inlay hints, code lenses,
-- and the `Rewind to here` lens writing a repaired copy.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

local lines = H.nav_lines

H.run(function()
  local rewind = H.setup()
  local path = H.write_nav_transcript()
  local original = H.read_bytes(path)
  local buf = H.open(path)
  H.client(buf)
  H.wait_diagnostic(buf, "orphan-tool-use")

  H.test("navigation: the outline is one Event per prompt with its tool calls and replies", function()
    local symbols = H.request(buf, "textDocument/documentSymbol", { textDocument = { uri = vim.uri_from_bufnr(buf) } })
    local outline = {}
    for _, s in ipairs(symbols) do
      local children = {}
      for _, c in ipairs(s.children or {}) do
        table.insert(children, c.name)
      end
      table.insert(outline, { s.name, vim.lsp.protocol.SymbolKind[s.kind], children })
    end
    H.eq(outline, {
      { "list the files", "Event", { "Bash ls ✓", "Here they are." } },
      { "now run the tests", "Event", { "Bash npm test ✗" } },
      { "hello?", "Event", {} },
    }, "outline (name, kind, children)")
  end)

  H.test("navigation: vim.lsp.buf.document_symbol() lists the prompts and their calls", function()
    vim.fn.setloclist(0, {})
    vim.fn.setqflist({})
    vim.lsp.buf.document_symbol()
    local items = H.wait(function() -- 0.10+: the location list; before: the quickfix list
      local list = vim.fn.getloclist(0)
      list = #list > 0 and list or vim.fn.getqflist()
      return #list > 0 and list
    end, "the list of document symbols")
    local texts = vim.tbl_map(function(i) return i.lnum .. " " .. i.text end, items)
    H.eq(texts, { "1 [Event] list the files", "2 [Function] Bash ls ✓", "4 [String] Here they are.",
      "5 [Event] now run the tests", "6 [Function] Bash npm test ✗", "7 [Event] hello?" }, "symbol list (line, text)")
    vim.cmd("lclose")
    vim.cmd("cclose")
    vim.cmd("buffer " .. buf)
  end)

  H.test("navigation: gd (definition) on a tool_result lands on its tool_use block", function()
    vim.cmd("buffer " .. buf)
    local col = lines[3]:find("toolu_01LS", 1, true) - 1
    vim.api.nvim_win_set_cursor(0, { 3, col })
    vim.lsp.buf.definition()
    local want = { 2, lines[2]:find('{"type":"tool_use"', 1, true) - 1 }
    H.wait(function() return vim.deep_equal(vim.api.nvim_win_get_cursor(0), want) end,
      "the cursor on the tool_use block " .. vim.inspect(want))
    H.eq(vim.api.nvim_get_current_buf(), buf, "buffer after the jump")
  end)

  H.test("navigation: references on the tool_use list its tool_result line", function()
    local col = lines[2]:find('{"type":"tool_use"', 1, true) + 1
    local refs = H.request(buf, "textDocument/references", {
      textDocument = { uri = vim.uri_from_bufnr(buf) }, position = { line = 1, character = col },
      context = { includeDeclaration = false } })
    H.eq(vim.tbl_map(function(r) return r.range.start.line end, refs), { 2 }, "reference lines (0-based)")
  end)

  if vim.lsp.inlay_hint and vim.fn.has("nvim-0.10") == 1 then
    H.test("navigation: inlay hints are on: messages.N at each line, the pairing on tool_use lines", function()
      H.ok(vim.lsp.inlay_hint.is_enabled({ bufnr = buf }), "inlay hints enabled by setup() for the transcript")
      local labels = H.wait(function()
        local found = {}
        for _, item in ipairs(vim.lsp.inlay_hint.get({ bufnr = buf })) do
          local label = item.inlay_hint.label
          if type(label) == "table" then
            label = table.concat(vim.tbl_map(function(p) return p.value end, label))
          end
          found[item.inlay_hint.position.line + 1] = label
        end
        return #found == #lines and found
      end, "an inlay hint on each of the " .. #lines .. " lines")
      H.eq(labels, { "messages.0", "messages.1 → result line 3", "messages.2", "messages.3", "messages.4",
        "messages.5 ✗ toolu_01RUN: no result", "messages.6" }, "inlay hint labels by line")
    end)
  else
    io.stdout:write("SKIP inlay hints: this Neovim has no vim.lsp.inlay_hint (0.10+)\n")
  end

  local function lens_titles()
    local found = {}
    for _, lens in ipairs(vim.lsp.codelens.get(buf)) do
      if lens.command then
        table.insert(found, { lens.range.start.line, lens.command.title })
      end
    end
    table.sort(found, function(a, b) return a[1] < b[1] end)
    return found
  end

  H.test("navigation: code lenses Repair session at the top and Rewind to here on the second prompt", function()
    local titles = H.wait(function()
      local t = lens_titles()
      return #t == 2 and t
    end, "two code lenses (refreshed by the plugin on attach)")
    H.eq(titles, { { 0, "Repair session (keeps everything)" }, { 4, "Rewind to here (drops 3 messages)" } },
      "code lenses (line, title)")
  end)

  H.test("navigation: vim.lsp.codelens.run() on `Rewind to here` writes the cut copy", function()
    vim.cmd("buffer " .. buf)
    vim.api.nvim_win_set_cursor(0, { 5, 0 })
    rewind.last_result = nil
    vim.lsp.codelens.run()
    local result = H.wait(function() return rewind.last_result end, "the rewind-lsp.rewindTo result")
    H.ok(type(result.path) == "string" and result.path ~= path, "result.path: " .. vim.inspect(result))
    local kept = {}
    for _, text in ipairs(vim.fn.readfile(result.path)) do
      table.insert(kept, vim.fn.json_decode(text).uuid)
    end
    H.eq(kept, { "u1", "a1", "u2", "a2" }, "kept lines: everything before the prompt")
    local code, output = H.server_check(result.path)
    H.eq(code, 0, "exit status of `rewind-lsp check` on the copy (" .. vim.trim(output) .. ")")
    H.eq(result.resumeCommand, "claude --resume " .. result.sessionId, "resumeCommand")
    H.eq(vim.fn.getreg('"'), result.resumeCommand, "resume command copied")
    H.ok(H.read_bytes(path) == original, "original transcript is byte-identical")
  end)
end)
