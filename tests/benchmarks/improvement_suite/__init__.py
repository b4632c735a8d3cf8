"""The improvement suite: small workspace tasks with real defects, each with its tests, benchmark, telemetry and a
hidden acceptance check, and one command that runs the improvement loop on every task against any OpenAI-compatible
endpoint (or scripted) and reports, per task, the outcome, the hidden check, rounds, tokens and seconds.

``python -m tests.benchmarks.improvement_suite --help``; the tasks are in ``tasks/`` (see ``catalog.py``).
"""
