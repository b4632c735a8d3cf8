"""v1 scratch"""
from bisect import bisect_left, insort
from collections import deque
from typing import NamedTuple
from pydantic import BaseModel, Field

class Detection(NamedTuple):
    score: float
    anomaly: bool

class DetectorConfig(BaseModel):
    window: int = Field(1000, description="")
    warmup: int = Field(300, description="")
    spike: float = Field(0.1, description="")
    level: float = Field(0.2, description="")
    diff: float = Field(0.1, description="")
    short: int = Field(10, description="")
    qa: float = Field(0.01, description="")
    suppress: int = Field(200, description="")
    rearm: float = Field(2.0, description="")
    use_spike: bool = True
    use_level: bool = True
    use_diff: bool = True

class SeriesDetector:
    def __init__(self, config: DetectorConfig) -> None:
        self.cfg = config
        self.vals: deque[float] = deque()
        self.sorted: list[float] = []
        self.dvals: deque[float] = deque()
        self.dsorted: list[float] = []
        self.recent: deque[float] = deque(maxlen=config.short)
        self.n = 0
        self.prev = None
        self.quiet = 0
        self.last_score = 0.0
        self.debug = []

    def update(self, timestamp: float, value: float) -> Detection:
        c = self.cfg
        self.n += 1
        s = self.sorted
        n = len(s)
        ev = el = ed = 0.0
        self.recent.append(value)
        if n >= 20:
            lo, hi = s[0], s[-1]
            k = int(c.qa * n)
            qlo, qhi = s[k], s[n - 1 - k]
            spread = qhi - qlo
            if spread <= 0:
                spread = (hi - lo) or (abs(hi) * 0.01 + 1e-9)
            if c.use_spike:
                ev = max(value - hi, lo - value) / spread
            if c.use_level:
                r = sorted(self.recent)
                m = r[len(r) // 2]
                el = max(m - qhi, qlo - m) / spread
        if self.prev is not None:
            d = abs(value - self.prev)
            ds = self.dsorted
            if c.use_diff and len(ds) >= 20:
                rng = ds[-1] - ds[0]
                if rng <= 0: rng = 1e-9
                ed = (d - ds[-1]) / rng
            self.dvals.append(d); insort(ds, d)
            if len(self.dvals) > c.window:
                ds.pop(bisect_left(ds, self.dvals.popleft()))
        self.prev = value
        self.vals.append(value); insort(s, value)
        if len(self.vals) > c.window:
            s.pop(bisect_left(s, self.vals.popleft()))
        score = max(0.0, ev / c.spike, el / c.level, ed / c.diff)
        anomaly = False
        if self.quiet > 0:
            self.quiet -= 1
            if score > 1.0 and score > self.last_score * c.rearm and self.n > c.warmup:
                anomaly = True
                self.quiet = c.suppress
                self.last_score = score
        elif self.n > c.warmup and score > 1.0:
            anomaly = True
            self.quiet = c.suppress
            self.last_score = score
        return Detection(score / (1 + score), anomaly)
