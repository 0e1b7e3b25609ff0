-- `claude` in a :terminal: the buffer is attached at TermOpen and its output,
-- streamed after the attach, is checked as a terminal log (term:// URI).
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

-- A stand-in for `claude` (and other programs): prints a line, waits for
-- the test to release it, then prints the 400 line (after `filler` lines, and
-- followed by 20 more when `filler` is given). Released only once the client
-- is initialized (didOpen sent), the diagnostic can only come from didChange.
local function program(name, filler)
  local path = H.tmp .. "/bin/" .. name
  local function burst(n, label)
    return ("i=0; while [ $i -lt %d ]; do echo \"%s $i\"; i=$((i+1)); done"):format(n, label)
  end
  -- Written beside it and renamed over it: an earlier test's `claude` may still be running it,
  -- and a running program's file cannot be opened for writing (ETXTBSY).
  local fresh = path .. ".new"
  H.write_file(fresh, {
    "#!/bin/sh",
    "echo starting session " .. H.session_id,
    ("while [ ! -e '%s.go' ]; do sleep 0.1; done"):format(path),
    burst(filler or 0, "output"),
    "echo '" .. H.line_400 .. "'",
    burst(filler and 20 or 0, "after"),
    "sleep 10",
  })
  vim.fn.setfperm(fresh, "rwxr-xr-x")
  assert(vim.fn.rename(fresh, path) == 0, "rename " .. fresh)
  return path
end

local function release(name)
  H.write_file(H.tmp .. "/bin/" .. name .. ".go", {})
end

local function open_terminal(name, filler)
  vim.cmd("enew")
  vim.fn.termopen({ program(name, filler) })
  return vim.api.nvim_get_current_buf()
end

local function line_of(bufnr, text)
  for i, line in ipairs(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)) do
    if line:find(text, 1, true) then
      return i - 1
    end
  end
end

H.run(function()
  vim.o.columns = 200 -- keep the 400 line on one terminal row
  local named, other = H.write_sessions()
  local rewind = H.setup()
  local claude, plain, diag

  H.test("terminal: a terminal running claude is attached at TermOpen", function()
    claude = open_terminal("claude")
    H.eq(vim.bo[claude].buftype, "terminal", "buftype")
    H.ok(rewind.is_claude_terminal(claude), "matched as claude: " .. vim.api.nvim_buf_get_name(claude))
    local client = H.client(claude)
    H.ok(vim.startswith(vim.uri_from_bufnr(claude), "term://"), "term:// URI")
    H.ok(client.attached_buffers == nil or client.attached_buffers[claude], "client attached to the terminal")
  end)

  H.test("terminal: streamed 400 output gets the diagnostic (didChange)", function()
    H.client(claude)
    H.wait(function() return line_of(claude, "starting") end, "the first output line")
    H.eq(#H.diagnostics(claude), 0, "diagnostics before the 400 is printed")
    release("claude")
    diag = H.wait_diagnostic(claude, "tool-use-concurrency-400")
    H.eq(diag.lnum, line_of(claude, H.line_400), "line of the 400 output")
    H.eq(diag.severity, vim.diagnostic.severity.ERROR, "severity")
  end)

  H.test("terminal: hover works in the terminal buffer", function()
    H.ok(diag, "needs the diagnostic")
    local text = H.hover_text(claude, diag.lnum, diag.col + 1)
    H.ok(text:find("400", 1, true), "hover text: " .. text)
  end)

  H.test("terminal: :RewindLspRewind rewinds the session named in the terminal", function()
    H.ok(diag, "needs the diagnostic")
    H.rewind_named_session(claude, named, other)
  end)

  H.test("terminal: `:terminal claude --resume ...` (spaces and quotes in the term:// URI)", function()
    program("claude")
    vim.cmd("enew")
    vim.cmd("terminal " .. vim.fn.fnameescape(H.tmp .. "/bin/claude") .. " --resume 'a b' \"c\"")
    local t = vim.api.nvim_get_current_buf()
    H.ok(vim.api.nvim_buf_get_name(t):find("--resume 'a b' \"c\"", 1, true), vim.api.nvim_buf_get_name(t))
    local d = H.wait_diagnostic(t, "tool-use-concurrency-400")
    H.eq(d.lnum, line_of(t, H.line_400), "line of the 400 output")
  end)

  H.test("terminal: output past 'scrollback' (lines dropped at the top) stays in sync", function()
    local t = open_terminal("claude-busy", 1500)
    vim.opt_local.scrollback = 100
    H.client(t)
    release("claude-busy")
    H.wait(function() return line_of(t, "after 19") end, "the end of the output")
    vim.wait(1000) -- let the last changes reach the server
    local lines = vim.api.nvim_buf_get_lines(t, 0, -1, false)
    H.ok(not lines[1]:find("starting", 1, true), "scrollback trimmed the top: " .. lines[1])
    local d = H.wait_diagnostic(t, "tool-use-concurrency-400")
    H.eq(d.lnum, line_of(t, H.line_400), "line of the 400 output after trimming")
    H.eq(#H.diagnostics(t, "tool-use-concurrency-400"), 1, "400 findings")
  end)

  H.test("terminal: other terminals are left alone", function()
    plain = open_terminal("plain-shell")
    release("plain-shell")
    H.wait(function() return line_of(plain, H.line_400) end, "the 400 line in the plain terminal")
    vim.wait(500)
    H.eq(rewind.client_for(plain), nil, "client on a non-claude terminal")
    H.eq(#H.diagnostics(plain), 0, "diagnostics on a non-claude terminal")
  end)

  H.test("terminal: :RewindLspAttach attaches any terminal, with its earlier output", function()
    vim.cmd("buffer " .. plain)
    vim.cmd("RewindLspAttach")
    local d = H.wait_diagnostic(plain, "tool-use-concurrency-400")
    H.eq(d.lnum, line_of(plain, H.line_400), "line of the 400 output")
  end)

  H.test("terminal: terminal_match option override", function()
    H.setup({ terminal_match = function(bufnr)
      return vim.api.nvim_buf_get_name(bufnr):find("my-agent", 1, true) ~= nil
    end })
    local agent = open_terminal("my-agent")
    release("my-agent")
    H.wait_diagnostic(agent, "tool-use-concurrency-400")
    H.eq(rewind.is_claude_terminal(open_terminal("claude")), false, "claude terminal under the override")
  end)

  H.test("terminal: attach_terminals = false leaves claude terminals alone", function()
    H.setup({ attach_terminals = false })
    local t = open_terminal("claude")
    vim.wait(800)
    H.eq(rewind.client_for(t), nil, "client on the terminal")
  end)
end)
