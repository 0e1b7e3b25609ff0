-- :checkhealth rewind_lsp, and the help file's tags.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

local function checkhealth()
  vim.cmd("checkhealth rewind_lsp")
  return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
end

H.run(function()
  H.test("health: before setup() it warns and still checks the defaults", function()
    local report = checkhealth()
    H.ok(report:find("setup() has not been called", 1, true), report)
    vim.cmd("bwipeout!")
  end)

  H.test("health: server found, version, watched roots, all OK", function()
    vim.fn.mkdir(H.claude_dir .. "/projects", "p")
    H.setup()
    local report = checkhealth()
    H.ok(report:find("OK", 1, true), "no OK in:\n" .. report)
    H.ok(report:find("server executable: " .. H.server, 1, true), "executable line missing:\n" .. report)
    local version = report:match("server version: ([^\n]+)")
    H.ok(version and version:find("%d+%.%d+"), "version line missing:\n" .. report)
    H.ok(report:find("watched root: " .. H.claude_dir .. "/projects", 1, true), "watched root missing:\n" .. report)
    H.ok(report:find(H.log_dir, 1, true), "log dir (REWIND_LSP_LOG_DIR) missing:\n" .. report)
    H.ok(not report:find("ERROR", 1, true), "ERROR in:\n" .. report)
    vim.cmd("bwipeout!")
  end)

  H.test("health: watchRoots setting is reported", function()
    H.setup({ settings = { watchRoots = { H.work_dir, H.tmp .. "/missing" } } })
    local report = checkhealth()
    H.ok(report:find("watched root: " .. H.work_dir, 1, true), report)
    H.ok(report:find("does not exist (yet): " .. H.tmp .. "/missing", 1, true), report)
    vim.cmd("bwipeout!")
  end)

  H.test("health: a missing server is an ERROR", function()
    H.setup({ cmd = { "rewind-lsp-does-not-exist", "serve" } })
    local report = checkhealth()
    H.ok(report:find("ERROR", 1, true) and report:find("rewind-lsp-does-not-exist", 1, true), report)
    local advice = "rewind-lsp is not on PyPI: pipx install /path/to/a/clone (or pip install /path/to/a/clone), "
      .. "or ./scripts/setup in the clone for its .venv/bin/rewind-lsp"
    H.ok(report:find(advice, 1, true), "install advice missing:\n" .. report)
    vim.cmd("bwipeout!")
  end)

  H.test("docs: :helptags indexes doc/rewind-lsp.txt", function()
    local doc = H.tmp .. "/doc"
    vim.fn.mkdir(doc, "p")
    vim.fn.writefile(vim.fn.readfile(H.plugin_dir .. "/doc/rewind-lsp.txt"), doc .. "/rewind-lsp.txt")
    vim.cmd("helptags " .. vim.fn.fnameescape(doc))
    local tags = table.concat(vim.fn.readfile(doc .. "/tags"), "\n")
    for _, tag in ipairs({ "rewind-lsp", "rewind_lsp.setup()", ":RewindLspRewind", ":RewindLspRepair",
      ":RewindLspShowFix", "rewind-lsp-terminal" }) do
      H.ok(tags:find("^" .. vim.pesc(tag) .. "\t") or tags:find("\n" .. vim.pesc(tag) .. "\t"), "tag " .. tag)
    end
  end)
end)
