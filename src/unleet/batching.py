"""Token-budget batches: examples of similar length together, padded to a few fixed shapes.

Padding a random batch to its longest example wastes most of the compute on short texts, and
every new shape costs a recompile under `torch.compile`. Here each epoch's examples are
shuffled, cut into pools, sorted by length within a pool, and packed greedily so that
`rows x padded length` stays within `max_tokens`; lengths round up to a multiple of
`pad_multiple`, so only a few shapes ever occur. The plan depends only on (seed, epoch), which is
what lets a resumed run continue at exactly the batch it stopped at, on every process.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


def padded(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


@dataclass(frozen=True)
class Position:
    """Where training stands in the data: the epoch and the batches of it already consumed."""

    epoch: int = 0
    batch: int = 0


class TokenBudgetBatches:
    def __init__(
        self,
        source_lengths: Sequence[int],
        target_lengths: Sequence[int],
        max_tokens: int,
        pad_multiple: int,
        seed: int,
        pool_batches: int = 50,
    ) -> None:
        longest = max(padded(max(s, t), pad_multiple) for s, t in zip(source_lengths, target_lengths, strict=True))
        if longest > max_tokens:
            raise ValueError(f"train.batch_tokens={max_tokens} is below the longest padded example ({longest})")
        self.lengths = list(zip(source_lengths, target_lengths, strict=True))
        self.max_tokens = max_tokens
        self.pad_multiple = pad_multiple
        self.seed = seed
        self.pool_size = pool_batches * max(1, max_tokens // max(longest, 1))

    def epoch(self, epoch: int) -> list[list[int]]:
        """Every example once, in batches within the token budget, in a seeded order."""
        generator = random.Random(f"{self.seed}:{epoch}")
        order = list(range(len(self.lengths)))
        generator.shuffle(order)
        batches: list[list[int]] = []
        for start in range(0, len(order), self.pool_size):
            pool = sorted(order[start : start + self.pool_size], key=lambda i: max(self.lengths[i]))
            batch: list[int] = []
            width = 0
            for index in pool:
                new_width = max(width, padded(max(self.lengths[index]), self.pad_multiple))
                if batch and new_width * (len(batch) + 1) > self.max_tokens:
                    batches.append(batch)
                    batch, new_width = [], padded(max(self.lengths[index]), self.pad_multiple)
                batch.append(index)
                width = new_width
            if batch:
                batches.append(batch)
        generator.shuffle(batches)
        return batches

    def shard(self, epoch: int, rank: int, world: int, even: bool = True) -> list[list[int]]:
        """This process's share of an epoch: every `world`-th batch.

        Training needs the same count on every rank (each step synchronises gradients), so the
        remainder is dropped; evaluation (`even=False`) keeps every batch.
        """
        batches = self.epoch(epoch)
        usable = len(batches) - len(batches) % world if even else len(batches)
        return batches[rank:usable:world]
