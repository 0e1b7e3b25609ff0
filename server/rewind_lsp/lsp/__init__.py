"""The language server: a thin LSP layer (pygls) over the pure core."""
