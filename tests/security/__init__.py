"""Security suite (issue 7): syscall audit, tamper and leak fuzzing, hostile input, concurrency and
faults. Every test here is marked ``security`` and runs in the normal suite; the summary table is
printed by :mod:`tests.security.plugin` at the end of the session."""
