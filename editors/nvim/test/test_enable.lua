-- Neovim 0.11+: lsp/rewind_lsp.lua alone, `vim.lsp.enable("rewind_lsp")` with
-- no setup() call, attaches to a transcript and gets its diagnostic.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  if vim.fn.has("nvim-0.11") == 0 then
    io.stdout:write("SKIP enable: vim.lsp.enable needs Neovim 0.11+\n")
    return
  end
  -- `rewind-lsp` on PATH is the server under test.
  vim.env.PATH = vim.fn.fnamemodify(H.server, ":h") .. ":" .. vim.env.PATH
  vim.cmd("filetype on")

  H.test("enable: lsp/rewind_lsp.lua is a vim.lsp.Config with `rewind-lsp serve`", function()
    local cfg = vim.lsp.config.rewind_lsp
    H.ok(cfg ~= nil, "vim.lsp.config.rewind_lsp")
    H.eq(cfg.cmd, { "rewind-lsp", "serve" }, "cmd")
    H.eq(cfg.filetypes, { "jsonl" }, "filetypes")
    H.eq(type(cfg.root_dir), "function", "root_dir")
  end)

  H.test("enable: vim.lsp.enable alone attaches to a transcript and gets the Error", function()
    vim.lsp.enable("rewind_lsp")
    local buf = H.open(H.write_transcript())
    H.eq(vim.bo[buf].filetype, "jsonl", "filetype")
    local client = H.client(buf)
    H.eq(client.config.root_dir, H.claude_dir .. "/projects", "root (the watched projects folder)")
    local diag = H.wait_diagnostic(buf, "orphan-tool-use")
    H.eq(diag.lnum, 1, "line (0-based)")
    H.eq(diag.severity, vim.diagnostic.severity.ERROR, "severity")
    H.eq(require("rewind_lsp").config, nil, "setup() never ran")
  end)
end)
