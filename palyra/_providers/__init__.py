"""Provider adapters: pure translators between palyra and one wire dialect.

Adapters are imported on first use by the client, never by ``import palyra``.
"""
