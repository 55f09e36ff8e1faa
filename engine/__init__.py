"""evercall engine."""
