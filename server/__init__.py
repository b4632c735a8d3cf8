"""self-building-mcp server: settings, CLI, the server factory, transports and auth."""

# The single source of the version (pyproject.toml reads it from here); a constant, so start-up need not
# scan installed distributions for it.
__version__ = "0.1.0"
