"""The plugins that ship with Pelago. Each is also an entry point in ``pelago.plugins``."""
