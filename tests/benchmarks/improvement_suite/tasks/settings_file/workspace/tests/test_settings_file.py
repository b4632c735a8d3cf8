"""Tests of the settings file."""

from pathlib import Path

from components.settings_file import SettingsFile, parse_settings


def test_parse_skips_comments_and_blank_lines() -> None:
    """Comments, blank lines and lines without '=' are not settings; values keep later '=' signs."""
    text = "# header\n\nname = api\n  url=http://x/?a=b \nnot a setting\n"
    assert parse_settings(text) == {"name": "api", "url": "http://x/?a=b"}


def test_get_and_default(tmp_path: Path) -> None:
    """A key in the file is found; a missing key or a missing file gives the default."""
    path = tmp_path / "service.conf"
    settings = SettingsFile(path)
    assert settings.get("level", "info") == "info"
    path.write_text("level = debug\n", encoding="utf-8")
    assert settings.get("level") == "debug"
    assert settings.get("other", "x") == "x"


def test_an_edit_takes_effect_at_once(tmp_path: Path) -> None:
    """Operators edit the file while the service runs: the next read sees the new value."""
    path = tmp_path / "service.conf"
    path.write_text("limit = 10\n", encoding="utf-8")
    settings = SettingsFile(path)
    assert settings.get("limit") == "10"
    path.write_text("limit = 250\nburst = 5\n", encoding="utf-8")
    assert settings.get("limit") == "250"
    assert settings.get("burst") == "5"
