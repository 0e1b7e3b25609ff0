-- Shared helpers for the headless Neovim tests (run by test/run.sh).
-- Every test prints `PASS <name>` or `FAIL <name>: <reason>`; finish() exits
-- with :cquit when anything failed.
local H = {}

local function dirname(path)
  return vim.fn.fnamemodify(path, ":h")
end

H.test_dir = dirname(debug.getinfo(1, "S").source:sub(2))
H.plugin_dir = dirname(H.test_dir)
H.repo = vim.fn.fnamemodify(H.plugin_dir, ":h:h")
-- REWIND_LSP_SERVER overrides the server (e.g. an installed rewind-lsp).
H.server = vim.env.REWIND_LSP_SERVER or (H.repo .. "/.venv/bin/rewind-lsp")
H.cmd = { H.server, "serve" }

H.failed = 0
H.passed = 0

-- Results go to stdout and, for run.sh, to the file named by $RW_RESULTS
-- (stdout is shared with Neovim's own messages).
local function out(line)
  io.stdout:write(line .. "\n")
  if vim.env.RW_RESULTS and vim.env.RW_RESULTS ~= "" then
    local f = assert(io.open(vim.env.RW_RESULTS, "a"))
    f:write(line .. "\n")
    f:close()
  end
end

-- Scratch folders: nothing touches the real home folder.
H.tmp = vim.fn.tempname()
H.claude_dir = H.tmp .. "/claude"
H.log_dir = H.tmp .. "/logs"
H.work_dir = H.tmp .. "/work"
for _, dir in ipairs({ H.claude_dir, H.log_dir, H.work_dir }) do
  vim.fn.mkdir(dir, "p")
end
vim.env.CLAUDE_CONFIG_DIR = H.claude_dir
vim.env.REWIND_LSP_LOG_DIR = H.log_dir
vim.opt.runtimepath:prepend(H.plugin_dir) -- harmless when run.sh did it already
vim.o.swapfile = false
vim.o.hidden = true

H.session_id = "11111111-1111-4111-8111-111111111111"
-- The minimal broken transcript of docs/CONTRACT.md.
H.transcript_lines = {
  '{"type":"user","uuid":"u1","parentUuid":null,"sessionId":"11111111-1111-4111-8111-111111111111","message":{"role":"user","content":"list files"}}',
  '{"type":"assistant","uuid":"a1","parentUuid":"u1","sessionId":"11111111-1111-4111-8111-111111111111","message":{"id":"msg_1","role":"assistant","content":[{"type":"tool_use","id":"toolu_01ABC","name":"Bash","input":{"command":"ls"}}]}}',
  '{"type":"user","uuid":"u2","parentUuid":"a1","sessionId":"11111111-1111-4111-8111-111111111111","message":{"role":"user","content":"hello?"}}',
}
H.line_400 = "API Error: 400 due to tool use concurrency issues. Run /rewind to recover the conversation."

function H.write_file(path, lines)
  vim.fn.mkdir(dirname(path), "p")
  local f = assert(io.open(path, "wb"))
  f:write(table.concat(lines, "\n") .. "\n")
  f:close()
  return path
end

function H.read_bytes(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local data = f:read("*a")
  f:close()
  return data
end

--- A transcript where Claude Code keeps it: <config>/projects/<project>/<id>.jsonl
function H.write_transcript()
  local path = ("%s/projects/-tmp-demo/%s.jsonl"):format(H.claude_dir, H.session_id)
  return H.write_file(path, H.transcript_lines)
end

--- Two broken sessions in one project: the contract's (older) and a newer
--- one whose first message is "FROM 2222", so a rewound copy shows its source.
--- Returns both paths.
function H.write_sessions()
  local named = H.write_transcript()
  local other_id = "22222222-2222-4222-8222-222222222222"
  local lines = {
    '{"type":"user","uuid":"u0","parentUuid":null,"sessionId":"' .. other_id
      .. '","message":{"role":"user","content":"FROM 2222"}}',
  }
  for i, line in ipairs(H.transcript_lines) do
    line = line:gsub(vim.pesc(H.session_id), other_id)
    if i == 1 then
      line = line:gsub('"parentUuid":null', '"parentUuid":"u0"')
    end
    table.insert(lines, line)
  end
  local other = H.write_file(vim.fn.fnamemodify(named, ":h") .. "/" .. other_id .. ".jsonl", lines)
  local hour_ago = os.time() - 3600
  vim.loop.fs_utime(named, hour_ago, hour_ago)
  return named, other
end

-- The transcript of the navigation tests (test_navigation.lua, the capture).
-- Two prompts answered, the third interrupting an unanswered Bash call
-- (literal lines: the columns below are found in them).
H.nav_lines = {
  '{"type":"user","uuid":"u1","parentUuid":null,"sessionId":"33333333-3333-4333-8333-333333333333","message":{"role":"user","content":"list the files"}}',
  '{"type":"assistant","uuid":"a1","parentUuid":"u1","sessionId":"33333333-3333-4333-8333-333333333333","message":{"role":"assistant","content":[{"type":"tool_use","id":"toolu_01LS","name":"Bash","input":{"command":"ls"}}],"id":"msg_1"}}',
  '{"type":"user","uuid":"u2","parentUuid":"a1","sessionId":"33333333-3333-4333-8333-333333333333","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01LS","content":"ok"}]}}',
  '{"type":"assistant","uuid":"a2","parentUuid":"u2","sessionId":"33333333-3333-4333-8333-333333333333","message":{"role":"assistant","content":[{"type":"text","text":"Here they are."}],"id":"msg_2"}}',
  '{"type":"user","uuid":"u3","parentUuid":"a2","sessionId":"33333333-3333-4333-8333-333333333333","message":{"role":"user","content":"now run the tests"}}',
  '{"type":"assistant","uuid":"a3","parentUuid":"u3","sessionId":"33333333-3333-4333-8333-333333333333","message":{"role":"assistant","content":[{"type":"tool_use","id":"toolu_01RUN","name":"Bash","input":{"command":"npm test"}}],"id":"msg_3"}}',
  '{"type":"user","uuid":"u4","parentUuid":"a3","sessionId":"33333333-3333-4333-8333-333333333333","message":{"role":"user","content":"hello?"}}',
}

--- The navigation transcript, as a session of the demo project.
function H.write_nav_transcript()
  return H.write_file(("%s/projects/-tmp-nav/33333333-3333-4333-8333-333333333333.jsonl"):format(H.claude_dir), H.nav_lines)
end

function H.fail(msg)
  error(msg, 2)
end

function H.ok(cond, msg)
  if not cond then
    error(msg or "assertion failed", 2)
  end
  return cond
end

function H.eq(actual, expected, what)
  if not vim.deep_equal(actual, expected) then
    error(("%s: expected %s, got %s"):format(what or "value", vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

function H.contains(list, item, what)
  for _, v in ipairs(list) do
    if v == item then
      return
    end
  end
  error(("%s: %s not in %s"):format(what or "list", vim.inspect(item), vim.inspect(list)), 2)
end

--- Wait until fn() returns a truthy value; returns it or raises `what`.
function H.wait(fn, what, timeout)
  local value
  local done = vim.wait(timeout or 20000, function()
    value = fn()
    return value and true or false
  end, 50)
  if not done then
    error("timed out waiting for " .. what, 2)
  end
  return value
end

function H.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    H.passed = H.passed + 1
    out("PASS " .. name)
  else
    H.failed = H.failed + 1
    out("FAIL " .. name .. ": " .. tostring(err))
  end
  return ok
end

function H.finish()
  out(("%d passed, %d failed"):format(H.passed, H.failed))
  vim.fn.delete(H.tmp, "rf")
  if H.failed > 0 then
    vim.cmd("cquit")
  else
    vim.cmd("qall!")
  end
end

--- Run a test file's body; a crash outside H.test still fails the run.
function H.run(body)
  local ok, err = xpcall(body, debug.traceback)
  if not ok then
    H.failed = H.failed + 1
    out("FAIL (crash): " .. tostring(err))
  end
  H.finish()
end

function H.setup(opts)
  local rewind = require("rewind_lsp")
  rewind.setup(vim.tbl_extend("force", { cmd = H.cmd }, opts or {}))
  return rewind
end

-- LSP helpers --------------------------------------------------------------

function H.open(path)
  vim.cmd("edit " .. vim.fn.fnameescape(path))
  return vim.api.nvim_get_current_buf()
end

function H.client(bufnr)
  return H.wait(function()
    local c = require("rewind_lsp").client_for(bufnr)
    return c and c.initialized and c
  end, "an initialized rewind-lsp client on buffer " .. bufnr)
end

function H.diagnostics(bufnr, code)
  local found = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    if code == nil or d.code == code then
      table.insert(found, d)
    end
  end
  return found
end

function H.wait_diagnostic(bufnr, code, timeout)
  return H.wait(function()
    return H.diagnostics(bufnr, code)[1]
  end, ("diagnostic %s on buffer %d"):format(code, bufnr), timeout)
end

--- vim.diagnostic item -> LSP Diagnostic (ASCII lines: byte == UTF-16 column).
function H.to_lsp(d)
  local lsp = vim.deepcopy((d.user_data and d.user_data.lsp) or {})
  lsp.range = {
    start = { line = d.lnum, character = d.col },
    ["end"] = { line = d.end_lnum or d.lnum, character = d.end_col or d.col },
  }
  lsp.severity = d.severity
  lsp.message = d.message
  lsp.source = d.source
  lsp.code = d.code
  return lsp
end

--- One request to the rewind-lsp client of `bufnr`; returns result or raises.
function H.request(bufnr, method, params, timeout)
  local responses, err = vim.lsp.buf_request_sync(bufnr, method, params, timeout or 10000)
  H.ok(responses, ("%s: no response (%s)"):format(method, tostring(err)))
  local id = require("rewind_lsp").client_for(bufnr).id
  local response = responses[id]
  H.ok(response, method .. ": no response from rewind-lsp")
  H.ok(not response.err and not response.error, method .. " error: " .. vim.inspect(response.err or response.error))
  return response.result
end

function H.hover_text(bufnr, line, character)
  local result = H.request(bufnr, "textDocument/hover", {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = line, character = character },
  })
  H.ok(result and result.contents, "hover returned nothing")
  return table.concat(vim.lsp.util.convert_input_to_markdown_lines(result.contents), "\n")
end

function H.code_actions(bufnr, diagnostic)
  local lsp = H.to_lsp(diagnostic)
  return H.request(bufnr, "textDocument/codeAction", {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = lsp.range,
    context = { diagnostics = { lsp } },
  }) or {}
end

--- First argument of the code action titled `title` at the buffer's first
--- finding of `code`, waiting until the server offers it.
function H.action_target(bufnr, code, title)
  return H.wait(function()
    local d = H.diagnostics(bufnr, code)[1]
    for _, action in ipairs(d and H.code_actions(bufnr, d) or {}) do
      if action.title == title and action.command then
        return action.command.arguments[1]
      end
    end
  end, ("a %q code action"):format(title))
end

--- Run :RewindLspRewind in `bufnr`; the new session's text must come from
--- `named` (not "FROM 2222") and neither original may change.
function H.rewind_named_session(bufnr, named, other)
  local before = { H.read_bytes(named), H.read_bytes(other) }
  local rewind = require("rewind_lsp")
  rewind.last_result = nil
  vim.cmd("buffer " .. bufnr)
  vim.cmd("RewindLspRewind")
  local result = H.wait(function() return rewind.last_result end, "the rewind-lsp.rewind result")
  H.ok(type(result.path) == "string", "result: " .. vim.inspect(result))
  local text = H.read_bytes(result.path) or ""
  H.ok(text:find("list files", 1, true) and not text:find("FROM 2222", 1, true),
    "rewound copy comes from the named session: " .. text)
  H.eq({ H.read_bytes(named), H.read_bytes(other) }, before, "original transcripts")
end

function H.titles(actions)
  return vim.tbl_map(function(a) return a.title end, actions)
end

--- Run vim.lsp.buf.code_action() the way a user does, choosing `title` in
--- the vim.ui.select menu.
function H.choose_code_action(title)
  local chosen
  local select = vim.ui.select
  vim.ui.select = function(items, opts, on_choice)
    for i, item in ipairs(items) do
      local action = item.action or item[2] -- 0.8+: {action=...}; 0.7: {client_id, action}
      local text = opts.format_item and opts.format_item(item) or (action and action.title)
      if (action and action.title == title) or (text and text:find(title, 1, true)) then
        chosen = title
        vim.ui.select = select
        return on_choice(item, i)
      end
    end
    vim.ui.select = select
    on_choice(nil, nil)
  end
  vim.lsp.buf.code_action()
  H.wait(function() return chosen end, "code action menu offering " .. title)
end

--- Exit status of `rewind-lsp check <path>`, and its output.
function H.server_check(path)
  local output = vim.fn.system({ H.server, "check", path })
  return vim.v.shell_error, output
end

return H
