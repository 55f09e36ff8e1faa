"""evercall calls."""
