"""bench.run_suite split by concern: config (settings), load (locks, load monitor, timed loop),
machine (machine info), results (cell files, check, JSON/CSV, merge), stages (the child
processes), orchestrate (the parent). The CLI is `python -m bench.run_suite`."""
