"""Run the improvement loop on every task of the suite and print, per task, the outcome, the hidden check, rounds,
tokens and seconds, then the totals and the solve rate.

    python -m tests.benchmarks.improvement_suite --scripted
    python -m tests.benchmarks.improvement_suite --base-url http://127.0.0.1:8080/v1 --model qwen2.5-coder-1.5b
    SELF_BUILDING_LLM_MODEL=m python -m tests.benchmarks.improvement_suite --task config_parser --json out.json

The key comes from --api-key, SELF_BUILDING_LLM_API_KEY or OPENAI_API_KEY. Logs go to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import anyio

from generators.validation.models import STAGES
from tests.benchmarks.improvement_suite.catalog import load_tasks, task_names
from tests.benchmarks.improvement_suite.report import table, write_json
from tests.benchmarks.improvement_suite.runner import Endpoint, SuiteOptions
from tests.benchmarks.improvement_suite.suite import run_suite

RISKS = ("low", "medium", "high")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.improvement_suite",
        description="Run the improvement loop on the suite's tasks and judge each with its hidden check.",
    )
    parser.add_argument("--task", action="append", choices=task_names(), help="only this task (repeatable)")
    parser.add_argument("--scripted", action="store_true", help="answer with each task's reference (no model)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (else SELF_BUILDING_LLM_BASE_URL)")
    parser.add_argument("--model", help="model name (else SELF_BUILDING_LLM_MODEL)")
    parser.add_argument("--api-key", help="API key (else SELF_BUILDING_LLM_API_KEY or OPENAI_API_KEY)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--benchmark-runs", type=int, help="benchmark runs per side before the first verdict")
    parser.add_argument("--benchmark-max-runs", type=int, help="most benchmark runs per side")
    parser.add_argument("--max-rounds", type=int, help="rounds of ask, apply, validate per candidate")
    parser.add_argument("--monitoring-seconds", type=float, default=1.0, help="monitoring period (default 1)")
    parser.add_argument("--risk-tolerance", choices=RISKS, default="medium", help="highest risk acted on")
    parser.add_argument("--task-timeout", type=float, default=1800.0, help="seconds per task (default 1800)")
    parser.add_argument("--skip-types", action="store_true", help="validate without the mypy stage (faster)")
    parser.add_argument("--list", action="store_true", help="list the tasks and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="the server's own INFO logs too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    tasks = load_tasks(args.task)
    if args.list:
        sys.stdout.write("".join(f"{t.name:18} {t.defect:24} {t.summary}\n" for t in tasks))
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    logging.getLogger("tests.benchmarks.improvement_suite").setLevel(logging.INFO)
    options = SuiteOptions(
        stages=tuple(s for s in STAGES if s != "types") if args.skip_types else None,
        benchmark_runs=args.benchmark_runs,
        benchmark_max_runs=args.benchmark_max_runs,
        monitoring_seconds=args.monitoring_seconds,
        max_rounds=args.max_rounds,
        risk_tolerance=args.risk_tolerance,
        task_timeout=args.task_timeout,
    )
    if not args.scripted and not (args.model or os.environ.get("SELF_BUILDING_LLM_MODEL")):
        sys.stderr.write("no model: give --model (or SELF_BUILDING_LLM_MODEL), or --scripted\n")
        return 2
    endpoint = None if args.scripted else Endpoint(args.base_url, args.model, args.api_key)
    results = anyio.run(run_suite, tasks, options, endpoint)
    sys.stdout.write(table(results))
    if args.json:
        run = {
            "model": "scripted" if endpoint is None else args.model,
            "base_url": None if endpoint is None else args.base_url,
            "options": {k: v for k, v in vars(args).items() if k not in ("api_key", "json")},
        }
        write_json(args.json, results, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
