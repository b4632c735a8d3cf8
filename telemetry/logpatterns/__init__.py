"""Online log-pattern mining: group log lines into templates with ``<*>`` for their variable parts.

The server feeds ingested lines to one :class:`LogPatternMiner`; :func:`mine_file` does the same for a file
(``self-building-mcp log-patterns FILE``). :func:`parse_line` splits a raw line's header (timestamp, level,
component) from its message.
"""

from telemetry.logpatterns.batch import mine_file
from telemetry.logpatterns.headers import ParsedLine, parse_line
from telemetry.logpatterns.masking import WILDCARD, mask, tokenize
from telemetry.logpatterns.miner import (
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
    "LogPatternMiner",
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
