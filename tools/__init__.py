"""Scripts and helpers that are not tests: the fuzzing gate, PostgreSQL set-up, real servers."""
