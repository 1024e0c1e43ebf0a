"""palyra benchmarks: run ``python bench/run.py`` (or ``nox -s bench``)."""
