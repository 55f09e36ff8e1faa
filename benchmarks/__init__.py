"""evercall benchmarks."""
