"""unleet: decode slang and leetspeak into formal English with a reproducible DVC pipeline.

import unleet
unleet.load("models/unleet").decode(["idk wh4t 2 d0 tbh"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from unleet.decoder import Decoder

__version__ = "0.1.0"


def load(
    path: str | Path = "models/unleet",
    device: str | None = None,
    rerank: bool | None = None,
    copy_bias: float | None = None,
) -> Decoder:
    """Load a trained model directory for decoding (torch and transformers are imported only here).

    `rerank` and `copy_bias` None decode as the model was evaluated (`evaluate.rerank` and
    `evaluate.copy_bias` in its lineage).
    """
    from unleet.decoder import load as load_decoder

    return load_decoder(path, device, rerank, copy_bias)
