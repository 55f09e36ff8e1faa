"""evercall filters."""
