"""Thin MCP adapters, one module per tool group. This is the one place domain errors become ``ToolError``."""
