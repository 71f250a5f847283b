"""Benchmarks for the GPU machine: `python3 -m bench.gpu.<script>` from the repository root
(PYTHONPATH=$PWD/python there, where Kiln is not installed)."""
