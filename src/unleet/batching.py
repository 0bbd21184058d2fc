"""Length buckets: every training batch has one of a few fixed shapes.

Padding a random batch to its longest example wastes most of the compute on short texts, and
under `torch.compile` every new (rows, source width, target width) is a recompile; dynamo gives
up after a handful and runs the rest eager. So examples are grouped by source length into
`buckets` bins whose edges minimise the padded tokens of the data at hand; each bin has one
source width, one target width (wide enough for 99% of its targets: the rare longer target moves
up to a bin with room, instead of widening every batch of its own) and one row count that fills
the token budget (a multiple of 8 where the budget allows). A bin's last batch of an epoch is topped up with
empty rows (no tokens, ignored by the loss), so every example is seen once an epoch and the shapes
stay exactly `len(shapes)`. The plan depends only on (seed, epoch), and every epoch has the same
number of batches, so a resumed run continues at exactly the batch it stopped at.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

ROWS_MULTIPLE = 8  # tensor-core friendly row counts


def padded(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


@dataclass(frozen=True)
class Shape:
    rows: int
    source: int
    target: int


TARGET_COVERAGE = 0.99  # a bucket's target width fits this share of its sources' targets


def _covering_width(histogram: Counter[int], coverage: float) -> int:
    """The smallest width that holds `coverage` of the examples counted in `histogram`."""
    needed, held = coverage * sum(histogram.values()), 0
    for width in sorted(histogram):
        held += histogram[width]
        if held >= needed:
            return width
    return 0


def bucket_edges(source_widths: Sequence[int], target_widths: Sequence[int], buckets: int) -> list[int]:
    """Source widths closing each bucket, chosen (dynamic programming) to minimise padded tokens.

    A bucket of examples whose source widths lie in (previous edge, edge] costs its example
    count x (edge + the target width that holds 99% of their targets).
    """
    targets_by_source: dict[int, Counter[int]] = {}
    for source, target in zip(source_widths, target_widths, strict=True):
        targets_by_source.setdefault(source, Counter())[target] += 1
    widths = sorted(targets_by_source)
    buckets = min(buckets, len(widths))

    def cost(first: int, last: int) -> float:  # widths[first..last] in one bucket
        histogram = sum((targets_by_source[w] for w in widths[first : last + 1]), Counter())
        return histogram.total() * (widths[last] + _covering_width(histogram, TARGET_COVERAGE))

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
        self.edges = bucket_edges(sources, targets, buckets)
        histograms = [Counter() for _ in self.edges]
        for source, target in zip(sources, targets, strict=True):
            histograms[bisect.bisect_left(self.edges, source)][target] += 1
        target_widths = [_covering_width(histogram, TARGET_COVERAGE) for histogram in histograms]
        target_widths[-1] = max(targets)  # the last bucket holds whatever fits nowhere else
        for index in range(1, len(target_widths)):
            target_widths[index] = max(target_widths[index], target_widths[index - 1])
        self.shapes = []
        for source, target in zip(self.edges, target_widths, strict=True):
            rows = max_tokens // max(source, target)
            if rows < 1:
                raise ValueError(f"train.batch_tokens={max_tokens} is below the longest padded example ({source})")
            self.shapes.append(Shape(rows // ROWS_MULTIPLE * ROWS_MULTIPLE or rows, source, target))
        self.members: list[list[int]] = [[] for _ in self.shapes]
        self.widths = list(zip(sources, targets, strict=True))
        for index, (source, target) in enumerate(self.widths):
            self.members[self.bucket_of(source, target)].append(index)
        self.seed = seed

    def bucket_of(self, source_length: int, target_length: int) -> int:
        """The smallest bucket whose widths hold both lengths (an example whose target is unusually
        long for its source moves up to a bucket with room for it)."""
        bucket = bisect.bisect_left(self.edges, source_length)
        while self.shapes[bucket].target < target_length:
            bucket += 1
        return bucket

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

    def stream(self, rank: int, world: int, start: int) -> Iterator[list[int]]:
        """Batches from the `start`-th of this process's share onwards, epoch after epoch, forever."""
        epoch, skip = divmod(start, len(self) // world)  # the length of every training shard
        while True:
            yield from self.shard(epoch, rank, world)[skip:]
            epoch, skip = epoch + 1, 0

    def batches_until_every_shape(self) -> int:
        """How many batches of epoch 0 run before every shape has occurred: a compiled loop's warm-up."""
        seen: set[int] = set()
        for count, batch in enumerate(self.shard(0, 0, 1), start=1):
            seen.add(self.shape_index(batch))
            if len(seen) == len(self.shapes):
                return count
        return len(self)

    def shape_index(self, batch: Sequence[int]) -> int:
        """A batch's bucket: all its examples share it, so the widest of them names it."""
        return self.bucket_of(max(self.widths[i][0] for i in batch), max(self.widths[i][1] for i in batch))


class FixedShapeCollator:
    """Pads a bucket's batch to exactly its shape: widths, and rows with empty examples.

    Empty rows are one attended <pad> (a row with no attention at all can turn into NaNs inside
    attention) and labels of -100 only, so they add nothing to the loss or its gradient.
    """

    def __init__(self, buckets: LengthBuckets, pad_token_id: int) -> None:
        self.buckets = buckets
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        source = max(len(feature["input_ids"]) for feature in features)
        shape = self.buckets.shapes[self.buckets.bucket_of(source, max(len(feature["labels"]) for feature in features))]
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
