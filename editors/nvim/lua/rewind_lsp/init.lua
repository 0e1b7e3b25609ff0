-- rewind-lsp client for Neovim 0.7+.
-- Attaches the rewind-lsp server to Claude Code transcripts, terminal logs and
-- `:terminal` buffers running `claude`. Protocol: docs/CONTRACT.md.
local api = vim.api
local uv = vim.uv or vim.loop

local M = {}

M.name = "rewind_lsp" -- client name; also the vim.lsp.config() name on 0.11+
M.source = "rewind-lsp" -- `source` of the server's diagnostics

local has = function(feature) return vim.fn.has(feature) == 1 end

--- The server command: `rewind-lsp serve` when rewind-lsp is on PATH, else the
--- `.venv/bin/rewind-lsp` of the clone this plugin lives in (made by
--- `./scripts/setup`) when it exists, else `rewind-lsp serve` (checkhealth
--- then says it is missing).
function M.default_cmd()
  if vim.fn.executable("rewind-lsp") == 1 then
    return { "rewind-lsp", "serve" }
  end
  local here = debug.getinfo(1, "S").source:sub(2) -- <clone>/editors/nvim/lua/rewind_lsp/init.lua
  local venv = vim.fn.fnamemodify(here, ":p:h:h:h:h:h") .. "/.venv/bin/rewind-lsp"
  if vim.fn.executable(venv) == 1 then
    return { venv, "serve" }
  end
  return { "rewind-lsp", "serve" }
end

local defaults = {
  cmd = M.default_cmd(),
  patterns = { "*.jsonl", "*.log" },
  settings = {}, -- the `rewind-lsp` settings section (docs/CONTRACT.md)
  attach_terminals = true,
  -- Lua pattern found in the lowercased title or command of a terminal, or
  -- function(bufnr) -> boolean.
  terminal_match = "claude",
  root_dir = nil, -- string or function(bufnr) -> string
  -- Transcripts as documents (0.10+): `messages.N` / `→ result line L` inlay
  -- hints at the start of each line of the live conversation.
  inlay_hints = true,
  -- Code lenses (`Rewind to here`, `Repair session`), refreshed on attach,
  -- after edits and when the findings change.
  code_lens = true,
  on_attach = nil,
  capabilities = nil,
  cmd_env = nil,
}

M.config = nil -- the options in effect once setup() has run
local api_level = has("nvim-0.11") and "config" or (has("nvim-0.8") and "start" or "start_client")

local function notify(msg, level)
  vim.notify("rewind-lsp: " .. msg, level or vim.log.levels.INFO)
end

local function config()
  return M.config or defaults
end

-- Paths -----------------------------------------------------------------

local function joinpath(...)
  return (table.concat({ ... }, "/"):gsub("//+", "/"))
end

local function strip_slash(path)
  return (#path > 1 and path:gsub("/+$", "") or path)
end

--- Default log dir of the server (platformdirs' user log dir for `rewind-lsp`).
local function default_log_dir()
  if vim.env.REWIND_LSP_LOG_DIR and vim.env.REWIND_LSP_LOG_DIR ~= "" then
    return vim.env.REWIND_LSP_LOG_DIR
  end
  local home = uv.os_homedir()
  if has("mac") then
    return joinpath(home, "Library/Logs/rewind-lsp")
  elseif has("win32") then
    local base = vim.env.LOCALAPPDATA or joinpath(home, "AppData/Local")
    return joinpath(base, "rewind-lsp/Logs")
  end
  local state = vim.env.XDG_STATE_HOME
  if not state or state == "" then
    state = joinpath(home, ".local/state")
  end
  return joinpath(state, "rewind-lsp/log")
end

--- Claude Code's config dir (CLAUDE_CONFIG_DIR, default ~/.claude).
function M.claude_config_dir()
  local dir = vim.env.CLAUDE_CONFIG_DIR
  if dir and dir ~= "" then
    return dir
  end
  return joinpath(uv.os_homedir(), ".claude")
end

local function is_dir(path)
  local stat = path and uv.fs_stat(path)
  return stat ~= nil and stat.type == "directory"
end

--- Codex CLI's sessions folder (CODEX_HOME, default ~/.codex, then sessions).
function M.codex_sessions_dir()
  local home = vim.env.CODEX_HOME
  if not home or home == "" then
    home = joinpath(uv.os_homedir(), ".codex")
  end
  return joinpath(home, "sessions")
end

--- The folders the server watches: the `watchRoots` setting or its default
--- (the server's own: Codex's sessions only when that folder exists).
function M.watch_roots()
  local roots = config().settings.watchRoots
  if type(roots) == "table" and #roots > 0 then
    return roots
  end
  roots = { joinpath(M.claude_config_dir(), "projects"), default_log_dir() }
  if is_dir(M.codex_sessions_dir()) then
    table.insert(roots, M.codex_sessions_dir())
  end
  return roots
end

-- Buffers ---------------------------------------------------------------

local function is_terminal(bufnr)
  return vim.bo[bufnr].buftype == "terminal"
end

--- Does the file of `bufnr` match one of the configured patterns?
function M.matches(bufnr)
  local name = api.nvim_buf_get_name(bufnr)
  if name == "" or is_terminal(bufnr) then
    return false
  end
  for _, pat in ipairs(config().patterns) do
    if vim.fn.match(name, vim.fn.glob2regpat(pat)) >= 0 then
      return true
    end
  end
  return false
end

-- `term://{cwd}//{pid}:{cmd}` -> cwd, cmd
local function parse_term_name(name)
  return name:match("^term://(.-)//%d+:(.*)$")
end

--- Is `bufnr` a terminal running Claude Code (per the `terminal_match` option)?
function M.is_claude_terminal(bufnr)
  if not is_terminal(bufnr) then
    return false
  end
  local match = config().terminal_match
  if type(match) == "function" then
    return match(bufnr) and true or false
  end
  local texts = {}
  local _, cmd = parse_term_name(api.nvim_buf_get_name(bufnr))
  table.insert(texts, cmd or "")
  local ok, title = pcall(api.nvim_buf_get_var, bufnr, "term_title")
  if ok and type(title) == "string" then
    local _, title_cmd = parse_term_name(title)
    table.insert(texts, title_cmd or title)
  end
  for _, text in ipairs(texts) do
    if text:lower():find(match) then
      return true
    end
  end
  return false
end

--- Root folder for `bufnr`: the `root_dir` option, else the first watched
--- root that exists (so transcripts, logs and terminals share one client and
--- one scan of the watched folders), else the file's folder (a terminal's
--- working folder).
function M.root_for(bufnr)
  local opt = config().root_dir
  if type(opt) == "function" then
    return opt(bufnr)
  elseif type(opt) == "string" then
    return opt
  end
  for _, root in ipairs(M.watch_roots()) do
    root = strip_slash(vim.fn.fnamemodify(root, ":p"))
    if is_dir(root) then
      return root
    end
  end
  local name = api.nvim_buf_get_name(bufnr)
  local dir
  if is_terminal(bufnr) then
    dir = parse_term_name(name)
    dir = dir and strip_slash(vim.fn.fnamemodify(dir, ":p"))
  else
    dir = vim.fn.fnamemodify(name, ":p:h")
  end
  return is_dir(dir) and dir or vim.fn.getcwd()
end

-- Client API helpers (0.11 uses method calls, older versions closures) ------

local function get_clients(bufnr)
  local found = {}
  local all = vim.lsp.get_clients and vim.lsp.get_clients({ bufnr = bufnr })
    or vim.lsp.buf_get_clients(bufnr)
  for _, client in pairs(all) do
    if client.name == M.name then
      table.insert(found, client)
    end
  end
  return found
end

--- The rewind-lsp client attached to `bufnr`, if any.
function M.client_for(bufnr)
  return get_clients(bufnr == 0 and api.nvim_get_current_buf() or bufnr)[1]
end

local function request(client, method, params, handler, bufnr)
  if has("nvim-0.11") then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

-- Handlers ----------------------------------------------------------------

local function open_external(uri)
  local opener = has("mac") and "open" or (has("win32") and "explorer" or "xdg-open")
  if vim.fn.executable(opener) == 1 then
    vim.fn.jobstart({ opener, uri }, { detach = true })
    return true
  end
  notify("open " .. uri)
  return false
end

--- `window/showDocument` (Neovim 0.7 has no handler for it), like the
--- built-in one of later versions: with takeFocus the file replaces the
--- current window's buffer, without it the file opens in a split that does
--- not take the cursor. Non-file URIs go to the system opener.
function M.show_document(_, result)
  if not result or type(result.uri) ~= "string" then
    return { success = false }
  end
  if not vim.startswith(result.uri, "file:") then
    return { success = open_external(result.uri) }
  end
  local bufnr = vim.uri_to_bufnr(result.uri)
  vim.fn.bufload(bufnr)
  vim.bo[bufnr].buflisted = true
  local focus = result.takeFocus == true
  local win = vim.fn.bufwinid(bufnr)
  if win == -1 then
    local prev = api.nvim_get_current_win()
    if focus then
      vim.cmd("normal! m'")
    else
      vim.cmd("split")
    end
    win = api.nvim_get_current_win()
    api.nvim_win_set_buf(win, bufnr)
    if not focus then
      api.nvim_set_current_win(prev)
    end
  elseif focus then
    api.nvim_set_current_win(win)
  end
  local sel = result.selection
  if sel and sel.start then
    local line = math.min(sel.start.line + 1, api.nvim_buf_line_count(bufnr))
    api.nvim_win_set_cursor(win, { line, 0 })
  end
  return { success = true }
end

local function copy(text)
  vim.fn.setreg('"', text)
  if has("clipboard") then
    pcall(vim.fn.setreg, "+", text)
  end
end

M.last_result = nil -- result of the last workspace/executeCommand, for scripts

local function str(v)
  return type(v) == "string" and v or nil -- JSON null arrives as vim.NIL
end

--- Results of workspace/executeCommand. Contract: rewind/repair answer
--- {path, sessionId, resumeCommand}, copyResumeCommand {resumeCommand}; the
--- server reports its own failures with window/showMessage (and {error}).
function M.on_command_result(err, result, ctx)
  local command = ctx and ctx.params and ctx.params.command or "command"
  if err then
    notify(("%s failed: %s"):format(command, err.message or tostring(err)), vim.log.levels.ERROR)
    return
  end
  M.last_result = result
  if type(result) ~= "table" or str(result.error) then
    return
  end
  local resume = str(result.resumeCommand)
  if resume then
    copy(resume)
  end
  if str(result.path) and command ~= "rewind-lsp.copyResumeCommand" then
    -- The server's window/showMessage already names the new session and its
    -- resume command: a second message here meant two "Press ENTER" prompts.
    return
  elseif resume then
    notify("copied: " .. resume)
  end
end

--- Run a server command for the buffer; `arguments` defaults to `{ uri }`.
function M.execute(command, arguments, bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local client = M.client_for(bufnr)
  if not client then
    notify("no rewind-lsp client attached to this buffer (see :checkhealth rewind_lsp)", vim.log.levels.WARN)
    return false
  end
  local params = { command = command, arguments = arguments or { vim.uri_from_bufnr(bufnr) } }
  request(client, "workspace/executeCommand", params, M.on_command_result, bufnr)
  return true
end

local function utf16_col(line, col)
  col = math.min(col, #line)
  if has("nvim-0.11") then
    return vim.str_utfindex(line, "utf-16", col, false)
  end
  local _, u16 = vim.str_utfindex(line, col)
  return u16
end

--- A rewind-lsp diagnostic of `bufnr` in LSP form (for a codeAction context).
local function to_lsp_diagnostic(bufnr, d)
  local lsp = vim.deepcopy((d.user_data and d.user_data.lsp) or {})
  local function pos(lnum, col)
    local line = api.nvim_buf_get_lines(bufnr, lnum, lnum + 1, false)[1] or ""
    local ok, character = pcall(utf16_col, line, col)
    return { line = lnum, character = ok and character or col }
  end
  lsp.range = { start = pos(d.lnum, d.col), ["end"] = pos(d.end_lnum or d.lnum, d.end_col or d.col) }
  lsp.severity, lsp.message, lsp.source, lsp.code = d.severity, d.message, d.source, d.code
  return lsp
end

--- Rewind/Repair/Copy resume for the current buffer. A transcript is sent as
--- `[uri]`. For a log or terminal the session is the one the server names in
--- its code actions for the buffer's findings, so a terminal (term:// URI, no
--- file on disk) never falls back to some other session.
function M.session_command(command, bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local client = M.client_for(bufnr)
  if not client or api.nvim_buf_get_name(bufnr):match("%.jsonl$") then
    return M.execute(command, nil, bufnr)
  end
  local diagnostics = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    if d.source == M.source then
      table.insert(diagnostics, to_lsp_diagnostic(bufnr, d))
    end
  end
  if #diagnostics == 0 then
    notify("no rewind-lsp findings in this buffer", vim.log.levels.WARN)
    return false
  end
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = diagnostics[1].range,
    context = { diagnostics = diagnostics },
  }
  request(client, "textDocument/codeAction", params, function(err, actions)
    for _, action in ipairs(not err and actions or {}) do
      local cmd = type(action.command) == "table" and action.command
      if cmd and cmd.command == command then
        return M.execute(command, cmd.arguments, bufnr)
      end
    end
    notify("the server found no Claude Code transcript for this buffer", vim.log.levels.WARN)
  end, bufnr)
  return true
end

--- Rule id of the rewind-lsp diagnostic under (or else on the line of) the cursor.
function M.rule_under_cursor()
  local bufnr = api.nvim_get_current_buf()
  local cursor = api.nvim_win_get_cursor(0)
  local lnum, col = cursor[1] - 1, cursor[2]
  local on_line
  for _, d in ipairs(vim.diagnostic.get(bufnr, { lnum = lnum })) do
    local code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code)
    if d.source == M.source and code then
      local ends_after = (d.end_lnum or lnum) > lnum or col < (d.end_col or col + 1)
      if col >= d.col and ends_after then
        return code
      end
      on_line = on_line or code
    end
  end
  return on_line
end

function M.show_fix(rule)
  rule = (rule and rule ~= "") and rule or M.rule_under_cursor()
  if not rule then
    notify("no rewind-lsp diagnostic under the cursor", vim.log.levels.WARN)
    return false
  end
  return M.execute("rewind-lsp.showFix", { rule })
end

-- The transcript as a document ----------------------------------------------

local function is_transcript(bufnr)
  return api.nvim_buf_get_name(bufnr):match("%.jsonl$") ~= nil
end

--- Ask for the buffer's code lenses again (0.7-0.9 refresh the current
--- buffer only, hence nvim_buf_call).
function M.refresh_code_lens(bufnr)
  if api.nvim_buf_is_loaded(bufnr) then
    api.nvim_buf_call(bufnr, function() vim.lsp.codelens.refresh({ bufnr = bufnr }) end)
  end
end

--- on_attach for transcripts: inlay hints on (0.10+, `inlay_hints` option)
--- and code lenses kept fresh (`code_lens` option).
function M.enable_document_features(_, bufnr)
  if not is_transcript(bufnr) then
    return
  end
  local opts = config()
  if opts.inlay_hints ~= false and vim.lsp.inlay_hint and has("nvim-0.10") then
    vim.lsp.inlay_hint.enable(true, { bufnr = bufnr })
  end
  if opts.code_lens ~= false then
    M.refresh_code_lens(bufnr)
    local group = api.nvim_create_augroup("rewind_lsp_codelens_" .. bufnr, { clear = true })
    -- DiagnosticChanged: the server's check finished, so `Repair session`
    -- and the rewind points may have changed.
    api.nvim_create_autocmd({ "BufEnter", "InsertLeave", "TextChanged", "DiagnosticChanged" }, {
      group = group,
      buffer = bufnr,
      callback = function() M.refresh_code_lens(bufnr) end,
    })
  end
end

-- Lenses and code actions naming these run through M.execute, so their
-- result is handled like :RewindLspRepair's (resume command copied).
local function session_commands()
  local function run(command, ctx)
    M.execute(command.command, command.arguments, ctx and ctx.bufnr)
  end
  return { ["rewind-lsp.rewindTo"] = run, ["rewind-lsp.repair"] = run }
end

-- Starting and attaching --------------------------------------------------

local function client_config()
  local opts = config()
  local settings = next(opts.settings) and opts.settings or vim.empty_dict()
  local capabilities = opts.capabilities or vim.lsp.protocol.make_client_capabilities()
  capabilities = vim.tbl_deep_extend("force", capabilities, { window = { showDocument = { support = true } } })
  local handlers = { ["workspace/executeCommand"] = M.on_command_result }
  if not vim.lsp.handlers["window/showDocument"] then
    handlers["window/showDocument"] = M.show_document
  end
  return {
    name = M.name,
    cmd = opts.cmd,
    cmd_env = opts.cmd_env,
    settings = { ["rewind-lsp"] = settings },
    init_options = settings,
    capabilities = capabilities,
    handlers = handlers,
    commands = session_commands(),
    on_attach = function(client, bufnr)
      M.enable_document_features(client, bufnr)
      if opts.on_attach then
        opts.on_attach(client, bufnr)
      end
    end,
  }
end

--- The vim.lsp.Config of lsp/rewind_lsp.lua (Neovim 0.11+): the client of
--- setup() with its root_dir, for `vim.lsp.enable("rewind_lsp")` alone. It
--- attaches to transcripts (filetype jsonl); logs (no filetype) and
--- terminals need setup()'s autocommands.
function M.lsp_config()
  local cfg = client_config()
  cfg.filetypes = { "jsonl" }
  cfg.root_dir = function(bufnr, on_dir)
    if M.matches(bufnr) then
      on_dir(M.root_for(bufnr))
    end
  end
  return cfg
end

local clients_by_root = {} -- 0.7: root -> client id

local function start_client_07(cfg, bufnr)
  local id = clients_by_root[cfg.root_dir]
  if not (id and vim.lsp.get_client_by_id(id)) then
    id = vim.lsp.start_client(cfg)
    clients_by_root[cfg.root_dir] = id
  end
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
  end
  return id
end

--- Attach the rewind-lsp client for its root to `bufnr` (starting it when
--- needed). Returns the client id, or nil when the server cannot start.
function M.attach(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  if not api.nvim_buf_is_loaded(bufnr) then
    return nil
  end
  local cfg
  if api_level == "config" then
    cfg = vim.deepcopy(vim.lsp.config[M.name])
  else
    cfg = client_config()
  end
  local cmd = cfg.cmd
  if type(cmd) == "table" and vim.fn.executable(cmd[1]) == 0 then
    if not M._warned_missing then
      M._warned_missing = true
      notify(("server not found: %s (see :checkhealth rewind_lsp)"):format(cmd[1]), vim.log.levels.WARN)
    end
    return nil
  end
  cfg.root_dir = M.root_for(bufnr)
  if api_level == "start_client" then
    return start_client_07(cfg, bufnr)
  end
  return vim.lsp.start(cfg, { bufnr = bufnr })
end

--- Attach a terminal buffer if it runs Claude Code (or `force`).
function M.attach_terminal(bufnr, force)
  if not (force or config().attach_terminals) or not is_terminal(bufnr) then
    return nil
  end
  if M.client_for(bufnr) then
    return M.client_for(bufnr).id
  end
  if force or M.is_claude_terminal(bufnr) then
    return M.attach(bufnr)
  end
end

local function create_commands()
  local cmd = api.nvim_create_user_command
  cmd("RewindLspRewind", function() M.session_command("rewind-lsp.rewind") end,
    { desc = "rewind-lsp: write a truncated copy of this session" })
  cmd("RewindLspRepair", function() M.session_command("rewind-lsp.repair") end,
    { desc = "rewind-lsp: write a patched copy of this session" })
  cmd("RewindLspShowFix", function(a) M.show_fix(a.args) end,
    { nargs = "?", desc = "rewind-lsp: fix steps for the diagnostic under the cursor" })
  cmd("RewindLspCopyResume", function() M.session_command("rewind-lsp.copyResumeCommand") end,
    { desc = "rewind-lsp: copy the `claude --resume` command" })
  cmd("RewindLspAttach", function()
    local buf = api.nvim_get_current_buf()
    if is_terminal(buf) then
      M.attach_terminal(buf, true)
    else
      M.attach(buf)
    end
  end, { desc = "rewind-lsp: attach the server to the current buffer" })
end

local function expect(option, types)
  local got = type(M.config[option])
  if not vim.tbl_contains(types, got) then
    error(("rewind_lsp.setup: `%s` must be a %s, got a %s"):format(option, table.concat(types, " or "), got), 3)
  end
end

--- setup({ cmd, patterns, settings, attach_terminals, terminal_match, root_dir,
---         inlay_hints, code_lens, on_attach, capabilities, cmd_env })
function M.setup(opts)
  M.config = vim.tbl_extend("force", defaults, opts or {})
  expect("cmd", { "table", "function" })
  expect("patterns", { "table" })
  expect("settings", { "table" })
  expect("attach_terminals", { "boolean" })
  expect("terminal_match", { "string", "function" })
  expect("root_dir", { "nil", "string", "function" })
  expect("inlay_hints", { "boolean" })
  expect("code_lens", { "boolean" })

  if api_level == "config" then
    local cfg = client_config()
    cfg.root_dir = function(bufnr, on_dir)
      if M.matches(bufnr) then
        on_dir(M.root_for(bufnr))
      end
    end
    -- Replace (not merge with) an earlier setup(); vim.lsp.config(M.name,
    -- {...}) after setup() still adjusts it.
    vim.lsp.config[M.name] = cfg
    vim.lsp.enable(M.name)
  end

  -- vim.lsp.enable() only sees buffers that get a filetype and never
  -- terminals, so these autocommands cover the rest on every version; the
  -- client for a root is reused either way.
  local group = api.nvim_create_augroup("rewind_lsp", { clear = true })
  api.nvim_create_autocmd({ "BufReadPost", "BufNewFile" }, {
    group = group,
    pattern = M.config.patterns,
    callback = function(args) M.attach(args.buf) end,
  })
  if M.config.attach_terminals then
    -- TermOpen sees the command; the title changes later (e.g. `claude`
    -- typed into a shell), so check again when the terminal is revisited.
    api.nvim_create_autocmd({ "TermOpen", "TermLeave", "BufEnter" }, {
      group = group,
      callback = function(args) M.attach_terminal(args.buf) end,
    })
  end
  create_commands()

  for _, bufnr in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(bufnr) then
      if M.matches(bufnr) then
        M.attach(bufnr)
      else
        M.attach_terminal(bufnr)
      end
    end
  end
end

M.api_level = api_level
M.defaults = defaults

return M
