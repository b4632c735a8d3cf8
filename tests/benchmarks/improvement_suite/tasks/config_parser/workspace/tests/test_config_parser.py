"""Tests of parse_config."""

from components.config_parser import config_int, parse_config


def test_key_value_lines() -> None:
    """Keys and values are stripped; the value keeps any later '='."""
    assert parse_config("name = api\n url=http://x/?a=b \n") == {"name": "api", "url": "http://x/?a=b"}


def test_comments_and_blank_lines_are_skipped() -> None:
    """Comments and blank lines are not settings."""
    assert parse_config("# settings\n\n   \nworkers=4\n") == {"workers": "4"}


def test_config_int() -> None:
    """Integers are read; a missing key gives the default."""
    config = parse_config("workers=4\n")
    assert config_int(config, "workers", 1) == 4
    assert config_int(config, "threads", 2) == 2
