"""v2 scratch"""
from collections import deque
from typing import NamedTuple
from pydantic import BaseModel, Field

class Detection(NamedTuple):
    score: float
    anomaly: bool

class DetectorConfig(BaseModel):
    window: int = Field(1000, description="")
    refresh: int = Field(32, description="")
    warmup: int = Field(300, description="")
    spike: float = Field(0.1, description="")
    level: float = Field(0.2, description="")
    diff: float = Field(0.1, description="")
    season: float = Field(0.2, description="")
    flat: float = Field(1.5, description="")
    short: int = Field(10, description="")
    qa: float = Field(0.01, description="")
    suppress: int = Field(200, description="")
    rearm: float = Field(2.0, description="")
    days: int = Field(3, description="")
    season_norm: float = Field(0.05, description="")
    act: float = Field(0.2, description="")
    act_k: int = Field(30, description="")
    range_w: float = Field(1.0, description="")
    season_gate: float = Field(0.2, description="")
    min_season: int = Field(288, description="")
    use: str = Field("svdSf", description="")

class Ref:
    """Sliding reference distribution, quantiles refreshed every `refresh` points; min/max kept incrementally."""
    __slots__ = ("buf", "lo", "hi", "qlo", "qhi", "spread", "qa", "ready", "min_n", "med")
    def __init__(self, window: int, qa: float, min_n: int = 20) -> None:
        self.min_n = min_n
        self.buf: deque[float] = deque(maxlen=window)
        self.qa = qa
        self.lo = self.hi = self.qlo = self.qhi = 0.0
        self.spread = 0.0
        self.ready = False
    def refresh(self) -> None:
        s = sorted(self.buf)
        n = len(s)
        if n < self.min_n:
            return
        k = int(self.qa * n)
        self.lo, self.hi, self.qlo, self.qhi = s[0], s[-1], s[k], s[n - 1 - k]
        self.med = s[n // 2]
        sp = self.qhi - self.qlo
        if sp <= 0:
            sp = self.hi - self.lo
        if sp <= 0:
            sp = abs(self.hi) * 0.01 + 1e-9
        self.spread = sp
        self.ready = True

class SeriesDetector:
    def __init__(self, config: DetectorConfig) -> None:
        self.cfg = config
        self.vref = Ref(config.window, config.qa)
        self.dref = Ref(config.window, 0.0)
        self.sref = Ref(config.window, 0.0, config.min_season)
        self.fref = Ref(config.window, 0.0)
        self.aref = Ref(config.window, 0.0)
        self.ad: deque[float] = deque()
        self.asum = 0.0
        self.recent: deque[float] = deque(maxlen=config.short)
        self.sres: deque[float] = deque(maxlen=config.short)
        self.n = 0
        self.prev = None
        self.prev_t = None
        self.dts: list[float] = []
        self.period = 0
        self.ring: list[float] = []
        self.run = 0
        self.quiet = 0
        self.last_score = 0.0
        self.debug = []

    def _season_ref(self, value: float) -> float | None:
        P = self.period
        ring = self.ring
        L = len(ring)
        i = self.n % L
        ring[i] = value
        if self.n <= P * self.cfg.days:
            return None
        vals = sorted(ring[(i - P * k) % L] for k in range(1, self.cfg.days + 1))
        return vals[len(vals) // 2]

    def update(self, timestamp: float, value: float) -> Detection:
        c = self.cfg
        use = c.use
        self.n += 1
        n = self.n
        if self.prev_t is not None and not self.period:
            self.dts.append(timestamp - self.prev_t)
            if len(self.dts) >= 32:
                dt = sorted(self.dts)[16]
                p = round(86400 / dt) if dt > 0 else 0
                self.period = p if 24 <= p <= 5000 else -1
                if self.period > 0:
                    self.ring = [0.0] * (self.period * c.days + 1)
        self.prev_t = timestamp
        if n % c.refresh == 0:
            for r in (self.vref, self.dref, self.sref, self.fref, self.aref):
                r.refresh()
        scores = [0.0]; names = ["-"]
        v = self.vref
        self.recent.append(value)
        if v.ready:
            if "s" in use:
                names.append("s")
                scores.append(max(value - v.hi, v.lo - value) / max(v.spread, (v.hi - v.lo) * c.range_w) / c.spike)
            if "v" in use:
                r = sorted(self.recent)
                m = r[len(r) // 2]
                names.append("v")
                scores.append(max(m - v.qhi, v.qlo - m) / v.spread / c.level)
        v.buf.append(value)
        if value > v.hi: v.hi = value
        if value < v.lo: v.lo = value
        if self.prev is not None:
            d = abs(value - self.prev)
            r = self.dref
            if r.ready and "d" in use:
                names.append("d")
                scores.append((d - r.hi) / r.spread / c.diff)
            r.buf.append(d)
            if d > r.hi: r.hi = d
            self.ad.append(d)
            self.asum += d
            if len(self.ad) > c.act_k:
                self.asum -= self.ad.popleft()
                a = self.asum / c.act_k
                r = self.aref
                if r.ready and "a" in use:
                    names.append("a")
                    scores.append((a - r.hi) / r.spread / c.act)
                r.buf.append(a)
                if a > r.hi: r.hi = a
            # flatline: run of (near) repeated values
            tol = v.spread * 1e-6 if v.ready else 0.0
            self.run = self.run + 1 if d <= tol else 0
            r = self.fref
            if r.ready and "f" in use and self.run > 5:
                names.append("f")
                scores.append((self.run - r.hi) / max(r.hi, 5) / c.flat)
            r.buf.append(self.run)
            if self.run > r.hi: r.hi = self.run
        self.prev = value
        if self.period > 0 and "S" in use:
            ref = self._season_ref(value)
            if ref is not None:
                self.sres.append(abs(value - ref))
                rr = sorted(self.sres)
                m = rr[len(rr) // 2]
                r = self.sref
                if r.ready:
                    names.append("S")
                    scores.append((m - r.hi) / max(r.spread, v.spread * c.season_norm) / c.season)
                r.buf.append(m)
                if m > r.hi: r.hi = m
        score = max(scores)
        anomaly = False
        if n > c.warmup and score > 1.0:
            if self.quiet <= 0 or score > self.last_score * c.rearm:
                anomaly = True
                self.quiet = c.suppress
                self.last_score = score
                self.debug.append((n, names[scores.index(score)], round(score, 2)))
        self.quiet -= 1
        return Detection(score / (1 + score), anomaly)
