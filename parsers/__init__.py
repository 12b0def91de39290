"""@njit header parsers, filters and application decoders (see the parsers issue)."""
