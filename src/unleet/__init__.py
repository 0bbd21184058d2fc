"""unleet: decode slang and leetspeak into formal English with a reproducible DVC pipeline."""

__version__ = "0.1.0"
