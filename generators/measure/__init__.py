"""Measuring a change: a component's benchmark run on the code before and after it, interleaved (:mod:`.bench`), and
the statistics that say whether the difference is real (:mod:`.stats`). Below the improvement cycle, which judges its
changes with them, and the job queue, whose workers run the benchmarks."""
