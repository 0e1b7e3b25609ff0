-- setup({ settings = ... }) reaches the server (initializationOptions and the
-- `rewind-lsp` section of workspace/configuration).
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":h") .. "/helpers.lua")

H.run(function()
  local settings = { severity = { ["tool-use-concurrency-400"] = "warning" }, notifications = false }
  H.setup({ settings = settings })
  local buf = H.open(H.write_file(H.work_dir .. "/session.log", { "$ claude", H.line_400 }))

  H.test("settings: the severity setting changes the 400 finding to a Warning", function()
    local d = H.wait_diagnostic(buf, "tool-use-concurrency-400")
    H.eq(d.severity, vim.diagnostic.severity.WARN, "severity")
  end)

  H.test("settings: workspace/configuration answers the rewind-lsp section", function()
    local client = H.client(buf)
    H.eq(client.config.settings, { ["rewind-lsp"] = settings }, "client settings")
    H.eq(client.config.init_options, settings, "initializationOptions")
    local handler = client.handlers["workspace/configuration"] or vim.lsp.handlers["workspace/configuration"]
    local answer = handler(nil, { items = { { section = "rewind-lsp" } } },
      { client_id = client.id, method = "workspace/configuration" })
    H.eq(answer, { settings }, "answer")
  end)
end)
