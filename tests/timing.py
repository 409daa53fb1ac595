"""How long a test may wait for something that should come (a server starting, an answer,
a thread ending) before it calls it a hang. A hang guard, not a speed figure: CI's host can
be five times slower than a developer's and heavily loaded besides. A light module: the
benchmarks import test helpers that use it."""

HANG = 120.0
