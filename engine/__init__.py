"""hugering's runtime: producers, the poll loop, configuration and the `hugering` command."""
