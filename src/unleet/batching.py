"""Length buckets: every training batch has one of a few fixed shapes.

Padding a random batch to its longest example wastes most of the compute on short texts, and
under `torch.compile` every new (rows, source width, target width) is a recompile; dynamo gives
up after a handful and runs the rest eager. So examples are grouped by source length into
`buckets` bins whose edges minimise the padded tokens of the data at hand; each bin has one
source width, one target width (the longest target in it) and one row count that fills the token
budget (a multiple of 8 where the budget allows). A bin's last batch of an epoch is topped up with
empty rows (no tokens, ignored by the loss), so every example is seen once an epoch and the shapes
stay exactly `len(shapes)`. The plan depends only on (seed, epoch), and every epoch has the same
number of batches, so a resumed run continues at exactly the batch it stopped at.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

ROWS_MULTIPLE = 8  # tensor-core friendly row counts


def padded(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


@dataclass(frozen=True)
class Shape:
    rows: int
    source: int
    target: int


def bucket_edges(source_widths: Sequence[int], target_widths: Sequence[int], buckets: int) -> list[int]:
    """Source widths closing each bucket, chosen (dynamic programming) to minimise padded tokens.

    A bucket of examples whose source widths lie in (previous edge, edge] costs its example
    count x (edge + the longest target width in it).
    """
    counts = Counter(source_widths)
    longest_target: dict[int, int] = {}
    for source, target in zip(source_widths, target_widths, strict=True):
        longest_target[source] = max(longest_target.get(source, 0), target)
    widths = sorted(counts)
    buckets = min(buckets, len(widths))

    def cost(first: int, last: int) -> int:  # widths[first..last] in one bucket
        members = sum(counts[w] for w in widths[first : last + 1])
        return members * (widths[last] + max(longest_target[w] for w in widths[first : last + 1]))

    infinity = float("inf")
    best = [[infinity] * len(widths) for _ in range(buckets)]  # best[j][i]: widths[..i] in j+1 buckets
    previous_edge = [[-1] * len(widths) for _ in range(buckets)]
    for i in range(len(widths)):
        best[0][i] = cost(0, i)
    for j in range(1, buckets):
        for i in range(j, len(widths)):
            for split in range(j - 1, i):
                candidate = best[j - 1][split] + cost(split + 1, i)
                if candidate < best[j][i]:
                    best[j][i], previous_edge[j][i] = candidate, split
    edges, i = [], len(widths) - 1
    for j in range(buckets - 1, -1, -1):
        edges.append(widths[i])
        i = previous_edge[j][i]
    return sorted(edges)


class LengthBuckets:
    def __init__(
        self,
        source_lengths: Sequence[int],
        target_lengths: Sequence[int],
        max_tokens: int,
        pad_multiple: int,
        buckets: int,
        seed: int,
    ) -> None:
        sources = [padded(length, pad_multiple) for length in source_lengths]
        targets = [padded(length, pad_multiple) for length in target_lengths]
        self.source_widths = sources
        self.edges = bucket_edges(sources, targets, buckets)
        self.members: list[list[int]] = [[] for _ in self.edges]
        target_widths = [0] * len(self.edges)
        for index, (source, target) in enumerate(zip(sources, targets, strict=True)):
            bucket = bisect.bisect_left(self.edges, source)
            self.members[bucket].append(index)
            target_widths[bucket] = max(target_widths[bucket], target)
        self.shapes = []
        for source, target in zip(self.edges, target_widths, strict=True):
            rows = max_tokens // max(source, target)
            if rows < 1:
                raise ValueError(f"train.batch_tokens={max_tokens} is below the longest padded example ({source})")
            self.shapes.append(Shape(rows // ROWS_MULTIPLE * ROWS_MULTIPLE or rows, source, target))
        self.seed = seed

    def __len__(self) -> int:
        """Batches per epoch: the same every epoch."""
        return sum(-(-len(members) // shape.rows) for members, shape in zip(self.members, self.shapes, strict=True))

    def epoch(self, epoch: int) -> list[list[int]]:
        """Every example once, in batches of its bucket's rows (the last one short), in a seeded order."""
        generator = random.Random(f"{self.seed}:{epoch}")
        batches: list[list[int]] = []
        for members, shape in zip(self.members, self.shapes, strict=True):
            order = generator.sample(members, len(members))
            batches += [order[start : start + shape.rows] for start in range(0, len(order), shape.rows)]
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

    def stream(self, rank: int, world: int, start: int) -> Any:
        """Batches from the `start`-th of this process's share onwards, epoch after epoch, forever."""
        per_epoch = len(self.shard(0, rank, world))
        epoch, skip = divmod(start, per_epoch)
        while True:
            yield from self.shard(epoch, rank, world)[skip:]
            epoch, skip = epoch + 1, 0

    def batches_until_every_shape(self) -> int:
        """How many batches of epoch 0 run before every shape has occurred: a compiled loop's warm-up."""
        seen: set[Shape] = set()
        for count, batch in enumerate(self.shard(0, 0, 1), start=1):
            seen.add(self.shape_of(max(self.source_widths[i] for i in batch)))
            if len(seen) == len(self.shapes):
                return count
        return len(self)

    def shape_of(self, source_length: int) -> Shape:
        return self.shapes[bisect.bisect_left(self.edges, source_length)]


class FixedShapeCollator:
    """Pads a bucket's batch to exactly its shape: widths, and rows with empty examples.

    Empty rows are one attended <pad> (a row with no attention at all can turn into NaNs inside
    attention) and labels of -100 only, so they add nothing to the loss or its gradient.
    """

    def __init__(self, buckets: LengthBuckets, pad_token_id: int) -> None:
        self.buckets = buckets
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        shape = self.buckets.shape_of(max(len(feature["input_ids"]) for feature in features))
        input_ids = torch.full((shape.rows, shape.source), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((shape.rows, shape.source), dtype=torch.long)
        attention_mask[:, 0] = 1
        labels = torch.full((shape.rows, shape.target), -100, dtype=torch.long)
        for row, feature in enumerate(features):
            source, target = feature["input_ids"], feature["labels"]
            input_ids[row, : len(source)] = torch.tensor(source)
            attention_mask[row, : len(source)] = 1
            labels[row, : len(target)] = torch.tensor(target)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
