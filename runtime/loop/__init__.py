"""The camera loop of `mmad-edge run`: sources in, batched detection, results out (JSON lines,
saved anomalies, a window), per-source tallies."""
