"""rewind-lsp: find the broken tool pairing behind Claude Code's tool-use 400, and repair it."""

__version__ = "0.1.0"
