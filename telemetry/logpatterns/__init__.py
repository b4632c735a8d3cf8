"""Online log-pattern mining: group log lines into templates with ``<*>`` for their variable parts."""

from telemetry.logpatterns.miner import LogPatternMiner, MinerConfig, PatternMatch, PatternStats

__all__ = ["LogPatternMiner", "MinerConfig", "PatternMatch", "PatternStats"]
