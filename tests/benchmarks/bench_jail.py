"""The jail's start-up: one run of a trivial Python program (``python -I -c pass`` under the sandbox's launcher)
without a jail and in bubblewrap's, interleaved in the same run; the figure is the difference of the medians (what
the jail adds to every sandboxed test run and benchmark run) and their ratio."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from generators.validation.jail import Jail

LIMITS = [str(1 << 30), "60", str(256 << 20)]


def run_once(jail: Jail, folder: Path) -> float:
    """One run as the server makes it: with its lifeline (and, set up by root, the seccomp filter)."""
    with jail.lifeline() as lifeline:
        command = jail.command(jail.launch("pass\n", LIMITS, folder, [], lifeline=lifeline), folder, lifeline=lifeline)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdin=subprocess.DEVNULL, capture_output=True, pass_fds=lifeline.fds)
        return (time.perf_counter() - start) * 1000


def measure(rounds: int = 30) -> dict[str, float]:
    bare, jailed = Jail("none"), Jail("bwrap")
    status = jailed.status()
    if not status.ready:
        raise SystemExit(f"the jail cannot start here: {status.detail}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jailed.prepare(folder)
        run_once(bare, folder)  # warm the file cache for both
        run_once(jailed, folder)
        plain: list[float] = []
        inside: list[float] = []
        for _ in range(rounds):
            plain.append(run_once(bare, folder))
            inside.append(run_once(jailed, folder))
    return {
        "rounds": rounds,
        "bare_ms": statistics.median(plain),
        "jailed_ms": statistics.median(inside),
        "added_ms": statistics.median(inside) - statistics.median(plain),
        "ratio": statistics.median(inside) / statistics.median(plain),
    }


def main() -> dict[str, float]:
    f = measure()
    sys.stdout.write(
        f"jail start-up (python -I -c pass, median of {f['rounds']:.0f}): unjailed {f['bare_ms']:.1f} ms, "
        f"in bubblewrap {f['jailed_ms']:.1f} ms: +{f['added_ms']:.1f} ms per run, ratio {f['ratio']:.2f}\n"
    )
    return f


if __name__ == "__main__":
    main()
