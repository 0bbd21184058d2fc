"""unleet: decode slang and leetspeak into formal English with a reproducible DVC pipeline.

import unleet
unleet.load("models/unleet").decode(["idk wh4t 2 d0 tbh"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from unleet.decoder import Decoder, load  # noqa: F401  (unleet.load, for type checkers)

__version__ = "0.1.0"


def __getattr__(name: str) -> Callable[..., Decoder]:
    """`unleet.load` is `unleet.decoder.load`, imported on first use: torch and transformers load only then."""
    if name == "load":
        from unleet.decoder import load

        return load
    raise AttributeError(f"module 'unleet' has no attribute {name!r}")
