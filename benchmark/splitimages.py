"""The few-shot split as images, for methods that tune the encoders (`needs={"images"}`).

The harness builds one `SplitImages` from the pool and the split (and nothing else: no ID-test or OOD
image can reach it). A method asks it for batches of the size its recipe sets, with its own augmentation:
`images.batches(batch_size=..., augment=..., generator=...)` is re-iterable, and each pass is a fresh
permutation drawn from the run's generator, cut into batches (the last one partial), whose images are
decoded and handed to `augment` (a list of PIL images -> [B, 3, H, W] tensor). Labels come with each batch.
Decoding runs in `threads` background threads (order kept); augmentation runs on the caller's thread, so
that its random draws stay in the order the generator gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from benchmark.data import LoadedDataset
from benchmark.errors import OodbenchError

Augment = Callable[[Sequence[object]], torch.Tensor]


class SplitImages:
    """The split's images (a dataset of exactly those images) and their labels."""

    def __init__(self, dataset: LoadedDataset, *, threads: int = 0) -> None:
        if len(dataset) == 0:
            raise OodbenchError("The few-shot split has no images.")
        self.dataset = dataset
        self.threads = threads

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.dataset.labels, dtype=np.int64))

    def image(self, i: int):
        """Decoded RGB image `i` of the split (PIL)."""
        return self.dataset.get_image(int(i))

    def batches(self, *, batch_size: int, augment: Augment, generator: torch.Generator) -> _Passes:
        """A re-iterable of (images [B, 3, H, W], labels [B]); every pass reshuffles from `generator`."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OodbenchError(f"batch_size must be a whole number >= 1 (got {batch_size!r}).")
        return _Passes(self, batch_size, augment, generator)


class _Passes:
    def __init__(self, images: SplitImages, batch_size: int, augment: Augment, generator: torch.Generator) -> None:
        self.images, self.batch_size, self.augment, self.generator = images, batch_size, augment, generator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator)
        labels = self.images.labels
        chunks = [order[s : s + self.batch_size] for s in range(0, n, self.batch_size)]
        pool = ThreadPoolExecutor(self.images.threads) if self.images.threads > 0 else None
        try:
            for idx in chunks:
                ids = idx.tolist()
                decoded = list(pool.map(self.images.image, ids)) if pool else [self.images.image(i) for i in ids]
                batch = self.augment(decoded)
                if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or len(batch) != len(ids):
                    shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
                    raise OodbenchError(
                        f"The augmentation returned {shape} for {len(ids)} images; it must return a tensor "
                        f"[{len(ids)}, 3, H, W]."
                    )
                yield batch, labels[idx]
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
