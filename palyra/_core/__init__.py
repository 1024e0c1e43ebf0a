"""The request core: the sans-I/O pipeline and its thin sync and async drivers."""
