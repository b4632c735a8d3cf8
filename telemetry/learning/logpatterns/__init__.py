"""Online log-pattern mining: group log lines into templates with ``<*>`` for their variable parts.

The server feeds ingested lines to one :class:`LogPatternMiner`; :func:`mine_file` does the same for a file
(``self-building-mcp log-patterns FILE``). A :class:`LogSource` splits a source's raw lines into header (timestamp,
level, component) and message, by the source's explicit :class:`LogFormat` or by the header layout it learns from
the source's first lines; :func:`parse_line` splits one line on its own evidence.
"""

from telemetry.learning.logpatterns.batch import mine_file
from telemetry.learning.logpatterns.formats import LogFormat
from telemetry.learning.logpatterns.headers import LogSource, ParsedLine, parse_line
from telemetry.learning.logpatterns.masking import WILDCARD, mask, tokenize
from telemetry.learning.logpatterns.miner import (
    EMPTY_TEMPLATE,
    LogPatternMiner,
    MinerConfig,
    PatternMatch,
    PatternStats,
    is_error,
)

__all__ = [
    "EMPTY_TEMPLATE",
    "WILDCARD",
    "LogFormat",
    "LogPatternMiner",
    "LogSource",
    "MinerConfig",
    "ParsedLine",
    "PatternMatch",
    "PatternStats",
    "is_error",
    "mask",
    "mine_file",
    "parse_line",
    "tokenize",
]
