"""snapshotd benchmarks: `python -m bench` prints ratios measured against a baseline in one run."""
