"""The attempts of a candidate: several generations per opportunity (the best measured one chosen), each archived per
component with its fate, and the checks a validated change must pass before it counts — not a repeat of an earlier
failed attempt, and for an error fix, a test that reproduces the logged failure. Functions of a
:class:`~generators.improvement.runner.Runner` (kept apart to keep the runner's module small)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from generators.improvement.attempts import (
    Attempt,
    AttemptOutcome,
    fingerprint,
    repeat_message,
    repeat_of,
)
from generators.improvement.models import CandidateDetail, CandidateRecord, CandidateStatus
from generators.llm import LLMError

if TYPE_CHECKING:
    from generators.codegen.edit_apply import Change
    from generators.codegen.rounds import AcceptCheck, GenerationResult, Objection
    from generators.improvement.runner import CandidateInputs, Runner


async def best_candidate(
    runner: Runner, record: CandidateRecord, inputs: CandidateInputs, module: str, raw: bytes, text: str
) -> GenerationResult:
    """``candidates_per_opportunity`` generations, each audited and archived; the best validated one (the last
    result when none was). A model that fails after some were validated leaves the choice to those."""
    wins: list[tuple[int, GenerationResult]] = []
    last: GenerationResult | None = None
    for number in range(1, runner.config.candidates_per_opportunity + 1):
        record.detail["attempt"] = number
        try:
            last = await runner.generate(inputs, module, text, record)
        except LLMError:
            if not wins:
                raise
            break
        await anyio.to_thread.run_sync(runner.audit_generation, inputs, module, last)
        if last.succeeded and last.change is not None:
            wins.append((number, last))
        else:
            await archive(runner, record, inputs, module, last, "refused", failed_message(last))
    if not wins:
        assert last is not None  # at least one candidate, and an LLM error with none validated was raised
        return last
    return await _choose(runner, record, inputs, module, raw, wins)


async def _choose(
    runner: Runner,
    record: CandidateRecord,
    inputs: CandidateInputs,
    module: str,
    raw: bytes,
    wins: list[tuple[int, GenerationResult]],
) -> GenerationResult:
    from generators.improvement.choice import choose

    changes = [{p: t.encode("utf-8") for p, t in r.change.files.items()} for _, r in wins if r.change]
    call = functools.partial(
        choose, runner.deployer.workspace, module, raw, changes, measure=inputs.opportunity.kind == "metric",
        config=runner.config, benchmarks=runner.generator().benchmarks,
    )  # fmt: skip
    picked = await anyio.to_thread.run_sync(call) if len(wins) > 1 else None
    index = picked.chosen if picked else 0
    if picked is not None:
        record.detail["candidates"] = [{"attempt": n, **f} for (n, _), f in zip(wins, picked.figures, strict=True)]
    for position, (number, result) in enumerate(wins):
        if position != index:
            record.detail["attempt"] = number
            why = f"another candidate measured better ({picked.figures[position] if picked else ''})"
            await archive(runner, record, inputs, module, result, "not_chosen", why)
    record.detail["attempt"] = wins[index][0]
    return wins[index][1]


async def earlier_attempts(runner: Runner, tenant: str, component: str) -> list[Attempt]:
    if runner.attempts is None:
        return []
    return await anyio.to_thread.run_sync(runner.attempts.recent, tenant, component)


async def archive(
    runner: Runner,
    record: CandidateRecord,
    inputs: CandidateInputs,
    module: str,
    result: GenerationResult,
    outcome: AttemptOutcome,
    reason: str,
) -> None:
    """Archive one attempt of ``record`` (its number is ``record.detail["attempt"]``) with its outcome."""
    if runner.attempts is None:
        return
    change = result.change or result.tried
    code = change.files.get(module) if change else None
    attempt = Attempt(
        inputs.tenant, inputs.opportunity.component, record.cycle_id, record.position,
        int(record.detail.get("attempt", 1)),
        runner.clock(), outcome, reason, result.diff or (change.diff() if change else ""),
        fingerprint(code) if code is not None else None, {},
    )  # fmt: skip
    await anyio.to_thread.run_sync(runner.attempts.record, attempt)


def proof_check(runner: Runner, module: str, evidence: str, record: CandidateRecord) -> AcceptCheck:
    """An error fix proves itself in the generation rounds: a validated change whose tests do not fail on the old
    code goes back to the model with what is missing (never deployed); the last proof's figures are recorded."""

    from generators.codegen.rounds import Objection  # the generation modules load on first use
    from generators.improvement.proof import prove_fix

    async def check(change: Change) -> Objection | None:
        prove = functools.partial(prove_fix, runner.generator().pipeline, runner.deployer.workspace, module,
                                  change.files, evidence)  # fmt: skip
        proof = await anyio.to_thread.run_sync(prove)
        record.detail["proof"] = proof.figures
        return None if proof.proved else Objection([proof.message])

    return check


SETTLED: dict[CandidateStatus, AttemptOutcome] = {
    "kept": "kept", "rolled_back": "rolled_back", "rejected": "rejected", "regressed": "regressed"
}  # fmt: skip


def failed_message(result: GenerationResult) -> str:
    """Why no change of a generation was accepted: its last round's outcome and first problem."""
    if not result.rounds:
        return "nothing was accepted"
    last = result.rounds[-1]
    first = last.problems[0].splitlines()[0][:300] if last.problems else ""
    return f"nothing was accepted in {len(result.rounds)} round(s); the last was {last.outcome}: {first}".rstrip(": ")


def effect_of(detail: CandidateDetail) -> float | None:
    figures = detail.get("figures")
    bench = figures.get("benchmark") if isinstance(figures, dict) else None
    value = bench.get("effect_percent") if isinstance(bench, dict) else None
    return float(value) if isinstance(value, int | float) else None


def accept_check(module: str, earlier: list[Attempt], proof: AcceptCheck | None) -> AcceptCheck | None:
    """A change that repeats an earlier failed attempt goes back to the model at once; then the proof of a fix."""
    if not earlier and proof is None:
        return None

    async def check(change: Change) -> Objection | None:
        code = change.files.get(module)
        repeated = repeat_of(code, earlier) if code is not None else None
        if repeated is not None:  # start again from the module as it is, not from the repeated answer
            from generators.codegen.rounds import Objection

            return Objection([repeat_message(repeated)], restart=True)
        return await proof(change) if proof is not None else None

    return check


BENCHMARK_SHOWN_CHARS = 2_000


def measured_by(runner: Runner, module: str) -> str:
    """The requirements' sentence on how a change of ``module`` is judged, with its benchmark script when it has one
    (bounded): a model that sees what is measured aims at it. Blocking (reads a file)."""
    from generators.measure.bench import find_benchmark

    rule = (
        f" It is kept only when the measured figure falls by more than {runner.config.min_effect_percent:g} % with "
        f"{runner.config.confidence:.0%} confidence; a change that is not measurably faster is rolled back."
    )
    script = find_benchmark(runner.deployer.workspace, module)
    if script is None:
        return "\nThe change is judged on the metric in the telemetry after it is deployed." + rule
    try:
        source = (runner.deployer.workspace / script).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return f"\nThe change is judged by the benchmark {script} (lower is better)." + rule
    if len(source) > BENCHMARK_SHOWN_CHARS:
        source = source[:BENCHMARK_SHOWN_CHARS] + "\n# ... (the rest left out)\n"
    return (
        f"\nThe change is judged by the benchmark {script}, run on the old and the new code (lower is better)."
        f"{rule} The benchmark (do not edit it):\n```python\n{source.rstrip()}\n```"
    )
