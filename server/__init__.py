"""self-building-mcp server: settings, CLI, the server factory, transports and auth."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("self-building-mcp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
