"""Service configuration from ``key=value`` lines, as operators write them."""


def parse_config(text: str) -> dict[str, str]:
    """The settings in ``text``, one per line: ``key=value``, key and value stripped, the value being everything
    after the first ``=``. A line that holds only a name is a flag and reads as ``"true"``. Blank lines and lines
    starting with ``#`` are skipped."""
    config: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        config[key.strip()] = value.strip()
    return config


def config_int(config: dict[str, str], key: str, default: int) -> int:
    """``config[key]`` as an integer, or ``default`` when the key is missing."""
    return int(config[key]) if key in config else default
