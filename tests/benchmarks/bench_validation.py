"""Validation of a 500-line typed module without the test stage (target <= 150 ms).

Printed four ways: the static stages (syntax, imports, security, quality, tenancy), then with the mypy type stage
cold (no cache), warm (a persistent cache directory), and in the long-lived mypy worker the server uses (warmed up
by three earlier checks, as a running server's is), where it overlaps the other static stages. Each round checks a
new version of the module, so no round is served from mypy's cache.
Run: python -m tests.benchmarks.bench_validation
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from generators.validation import ValidationConfig, ValidationPipeline
from generators.validation.models import StageName

STATIC: tuple[StageName, ...] = ("syntax", "imports", "security", "quality", "tenancy")
ROUNDS = 15


def typed_module(lines: int = 500) -> str:
    """A realistic typed component: dataclasses, functions with branches, a class with methods."""
    out = [
        '"""Order pricing for the shop tenant."""',
        "",
        "from __future__ import annotations",
        "",
        "import json",
        "import logging",
        "from collections.abc import Iterable",
        "from dataclasses import dataclass, field",
        "",
        "logger = logging.getLogger(__name__)",
        "",
    ]
    index = 0
    while len(out) < lines:
        out += [
            "",
            "@dataclass(frozen=True)",
            f"class Item{index}:",
            f'    """Line item {index}."""',
            "",
            "    sku: str",
            "    quantity: int",
            "    price: float",
            "    tags: list[str] = field(default_factory=list)",
            "",
            "    def total(self) -> float:",
            '        """Price times quantity, with a bulk discount."""',
            "        base = self.price * self.quantity",
            "        if self.quantity > 100:",
            "            return base * 0.9",
            "        return base",
            "",
            "",
            f"def price_{index}(items: Iterable[Item{index}], currency: str = 'EUR') -> dict[str, float]:",
            '    """Sum the items per SKU, skipping empty ones."""',
            "    totals: dict[str, float] = {}",
            "    for item in items:",
            "        if item.quantity <= 0 or not item.sku:",
            "            continue",
            "        totals[item.sku] = totals.get(item.sku, 0.0) + item.total()",
            "    logger.debug('priced %d skus in %s', len(totals), currency)",
            "    return totals",
            "",
            "",
            f"def encode_{index}(totals: dict[str, float]) -> str:",
            '    """Serialise totals."""',
            "    return json.dumps(totals, sort_keys=True)",
        ]
        index += 1
    return "\n".join(out[:lines]) + "\n"


def best_ms(
    pipeline: ValidationPipeline, ws: Path, change: dict[str, str], stages: tuple[StageName, ...]
) -> tuple[float, float]:
    times = []
    for index in range(ROUNDS):
        # A new version each round, as each generation round brings: nothing is served from the mypy cache.
        change = {path: text.replace("0.9", f"0.{index + 1}") for path, text in change.items()}
        started = time.perf_counter()
        report = pipeline.run(ws, change, stages=stages, tenant="shop")
        times.append((time.perf_counter() - started) * 1000)
        if not report.passed:
            raise SystemExit(report.render())
    return min(times), statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        (ws / "components" / "shop").mkdir(parents=True)
        (ws / "components" / "shop" / "__init__.py").write_text("", encoding="utf-8")
        change = {"components/shop/pricing.py": typed_module()}
        figures = [
            ("static stages", ValidationPipeline(), STATIC),
            ("+ mypy, no cache", ValidationPipeline(), (*STATIC, "types")),
            (
                "+ mypy, warm cache",
                ValidationPipeline(ValidationConfig(mypy_cache_dir=Path(tmp) / "cache")),
                (*STATIC, "types"),
            ),
            (
                "+ mypy in the long-lived worker (as the server runs it)",
                ValidationPipeline(ValidationConfig(mypy_cache_dir=Path(tmp) / "cache2", mypy_persistent=True)),
                (*STATIC, "types"),
            ),
        ]
        for label, pipeline, stages in figures:
            if pipeline.config.mypy_persistent:
                # A server's worker has checked code before: start it and let it warm up on three other versions
                # (its first checks are slower while mypy's in-process state fills), then measure.
                for warm in range(3):
                    version = {p: t.replace("0.9", f"0.0{warm}") for p, t in change.items()}
                    pipeline.run(ws, version, stages=stages, tenant="shop")
            best, median = best_ms(pipeline, ws, change, stages)
            pipeline.close()
            sys.stdout.write(
                f"validation of a 500-line module, {label}: best {best:.1f} ms, median {median:.1f} ms "
                "(target <= 150 ms)\n"
            )


if __name__ == "__main__":
    main()
