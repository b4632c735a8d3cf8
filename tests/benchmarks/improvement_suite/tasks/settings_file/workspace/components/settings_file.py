"""Settings of a running service from a ``key = value`` file that operators edit while it runs."""

from pathlib import Path


def parse_settings(text: str) -> dict[str, str]:
    """The settings in ``text``: one ``key = value`` per line; blank lines and lines starting with ``#`` are
    skipped; keys and values are stripped; the value is everything after the first ``=``."""
    settings: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        settings[key.strip()] = value.strip()
    return settings


class SettingsFile:
    """The settings file at ``path``. Every read reflects the file as it is now: an edit takes effect at once."""

    def __init__(self, path: Path) -> None:
        """Read settings from ``path`` (it may not exist yet)."""
        self.path = path

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key`` in the file as it is now, or ``default`` (also when the file does not exist)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return default
        return parse_settings(text).get(key, default)
