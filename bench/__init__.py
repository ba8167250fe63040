"""The wallet service's benchmark: `make bench` (docs/benchmarks.md)."""
