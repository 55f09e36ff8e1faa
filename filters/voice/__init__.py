"""Voice filters: streaming conversion toward the persona voice."""
