-- :checkhealth rewind_lsp
local M = {}

-- vim.health.start/ok/... on 0.9+, require("health").report_* on 0.7/0.8
local health = vim.health or require("health")
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local fail = health.error or health.report_error
local info = health.info or health.report_info

local function check_server(cmd)
  if type(cmd) ~= "table" then
    info("cmd is a " .. type(cmd) .. "; cannot check the executable")
    return
  end
  local path = vim.fn.exepath(cmd[1])
  if path == "" then
    fail(("server executable not found: %s"):format(cmd[1]), {
      "rewind-lsp is not on PyPI: pipx install /path/to/a/clone (or pip install /path/to/a/clone), or ./scripts/setup in the clone for its .venv/bin/rewind-lsp",
      "or set cmd in require('rewind_lsp').setup({ cmd = { '/path/to/rewind-lsp', 'serve' } })",
    })
    return
  end
  ok("server executable: " .. path)
  local out = vim.fn.system({ path, "--version" })
  local version = vim.trim(out)
  if vim.v.shell_error == 0 and version ~= "" then
    ok("server version: " .. version)
  else
    fail(("`%s --version` failed (exit %d): %s"):format(path, vim.v.shell_error, version))
  end
end

local function check_roots(rewind)
  if vim.env.CLAUDE_CONFIG_DIR and vim.env.CLAUDE_CONFIG_DIR ~= "" then
    info("CLAUDE_CONFIG_DIR=" .. vim.env.CLAUDE_CONFIG_DIR)
  end
  if vim.env.REWIND_LSP_LOG_DIR and vim.env.REWIND_LSP_LOG_DIR ~= "" then
    info("REWIND_LSP_LOG_DIR=" .. vim.env.REWIND_LSP_LOG_DIR)
  end
  for _, root in ipairs(rewind.watch_roots()) do
    if vim.fn.isdirectory(vim.fn.expand(root)) == 1 then
      ok("watched root: " .. root)
    else
      warn("watched root does not exist (yet): " .. root)
    end
  end
end

local function check_clients(rewind)
  local count = 0
  local all = vim.lsp.get_clients and vim.lsp.get_clients({ name = rewind.name })
    or vim.lsp.get_active_clients()
  for _, client in pairs(all) do
    if client.name == rewind.name then
      count = count + 1
      local bufs = vim.tbl_keys(client.attached_buffers or {})
      info(("client %d: root %s, %d buffer(s)"):format(client.id, tostring(client.config.root_dir), #bufs))
    end
  end
  if count == 0 then
    info("no rewind-lsp client running (open a transcript, a log or a claude terminal)")
  end
end

function M.check()
  local rewind = require("rewind_lsp")
  start("rewind-lsp")
  if rewind.config then
    ok("setup() called; Neovim API: vim.lsp." .. rewind.api_level)
  else
    warn("require('rewind_lsp').setup() has not been called; checking the defaults")
  end
  local cfg = rewind.config or rewind.defaults
  -- 0.11+: the registered config, which vim.lsp.config() may have changed
  local registered = rewind.config and rewind.api_level == "config" and vim.lsp.config[rewind.name]
  check_server(registered and registered.cmd or cfg.cmd)
  check_roots(rewind)
  info("patterns: " .. table.concat(cfg.patterns, ", ")
    .. (cfg.attach_terminals and "; claude terminals attached" or "; terminals not attached"))
  check_clients(rewind)
end

return M
