"""Build data/clean_text/wordnet-examples.txt: usage examples from WordNet 3.0, at most 1 MB.

    apt-get download wordnet-base && dpkg -x wordnet-base_*.deb wordnet
    python scripts/wordnet_examples.py wordnet/usr/share/wordnet > data/clean_text/wordnet-examples.txt

WordNet's glosses quote everyday usage ("she was able to program her computer"). This keeps the
ASCII ones of 4 words or more and 12 to 120 characters, a seeded sample that fits in 1 MB, sorted.
WordNet 3.0 Copyright 2006 by Princeton University; its licence is in data/clean_text/README.md.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

LIMIT_BYTES = 1_000_000
QUOTED = re.compile(r'"([^"]+)"')


def examples(dictionary: Path) -> list[str]:
    found = set()
    for part in ("noun", "verb", "adj", "adv"):
        for line in (dictionary / f"data.{part}").read_text(encoding="utf-8").splitlines():
            if line.startswith("  ") or "|" not in line:  # the licence header, or no gloss
                continue
            found |= {text.strip() for text in QUOTED.findall(line.split("|", 1)[1])}
    return sorted(text for text in found if 12 <= len(text) <= 120 and text.isascii() and len(text.split()) >= 4)


def main() -> None:
    texts = examples(Path(sys.argv[1]))
    random.Random(0).shuffle(texts)
    kept, size = [], 0
    for text in texts:
        if size + len(text) + 1 > LIMIT_BYTES:
            break
        kept.append(text)
        size += len(text) + 1
    sys.stdout.write("".join(f"{text}\n" for text in sorted(kept)))


if __name__ == "__main__":
    main()
