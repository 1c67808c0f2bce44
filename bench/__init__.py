"""Side-by-side benchmarks for the ROADMAP targets; each module runs as `python -m bench.<name>`.

Results go to bench/RESULTS.md (one section per benchmark, replaced on each full run).
"""
