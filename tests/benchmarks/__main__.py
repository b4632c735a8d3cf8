"""Run every benchmark and print its figures: python -m tests.benchmarks [--sampler-seconds N]."""

from __future__ import annotations

import argparse

from tests.benchmarks import (
    bench_anomaly,
    bench_cold_start,
    bench_cycle,
    bench_generated_tool,
    bench_ingest,
    bench_insights,
    bench_jail,
    bench_logpatterns,
    bench_rollback,
    bench_sampler,
    bench_status,
    bench_status_cli,
    bench_stop,
    bench_tool_list,
    bench_validation,
)

parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
parser.add_argument("--sampler-seconds", type=float, default=60.0, help="length of the sampler measurement")
args = parser.parse_args()
bench_status.main()
bench_tool_list.main()
bench_cold_start.main()
bench_status_cli.main()
bench_stop.main()
bench_sampler.main(args.sampler_seconds)
bench_ingest.main()
bench_anomaly.main()
bench_logpatterns.main()
bench_insights.main()
bench_validation.main()
bench_jail.main()
bench_generated_tool.main()
bench_rollback.main()
bench_cycle.main()
