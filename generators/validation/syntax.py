"""Stage 1: every changed ``.py`` file parses and compiles (catching what ``ast.parse`` lets through)."""

from __future__ import annotations

from generators.validation.models import Finding, StageOutcome
from generators.validation.overlay import Overlay


def check_syntax(overlay: Overlay) -> StageOutcome:
    """Report each file that fails ``ast.parse`` or ``compile`` with the line and the compiler's message."""
    findings = []
    for source in overlay.sources:
        error = source.error
        if error is None and source.tree is not None:
            try:
                compile(source.tree, source.path, "exec", dont_inherit=True)
            except SyntaxError as exc:
                error = exc
        if error is not None:
            findings.append(Finding(source.path, error.lineno or 0, f"syntax error: {error.msg}", "SYN001"))
    return StageOutcome(findings, note=f"{len(overlay.sources)} Python file(s) checked")
