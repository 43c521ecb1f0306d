"""Few-shot splits: k images per class drawn from a suite's pool, deterministic and hashed.

The same (pool list hash, k, seed) gives the same split on every machine: numpy's PCG64 generator
seeded with (seed, k) picks, per class in class order, k of that class's pool indices. The images
of the pool not in the split form the validation part that methods may use to choose
hyperparameters (at most `VAL_PER_CLASS` per class, drawn the same way).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from benchmark.errors import OodbenchError

VAL_PER_CLASS = 16


@dataclass(frozen=True)
class FewShotSplit:
    shots: int
    seed: int
    train: np.ndarray  # pool indices, sorted by class then draw order
    val: np.ndarray  # disjoint pool indices for hyperparameter choice
    sha256: str


def fewshot_split(
    labels: np.ndarray, *, shots: int, seed: int, pool_sha256: str, val_per_class: int = VAL_PER_CLASS
) -> FewShotSplit:
    labels = np.asarray(labels)
    if shots < 1:
        raise OodbenchError(f"shots must be at least 1 for a method that trains (got {shots}); use 1, 2, 4, 8 or 16.")
    rng = np.random.default_rng([seed, shots])
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size < shots:
            raise OodbenchError(f"The pool has only {idx.size} images of class {int(c)}, fewer than shots={shots}.")
        perm = rng.permutation(idx)
        train.append(perm[:shots])
        val.append(perm[shots : shots + val_per_class])
    train_idx = np.concatenate(train)
    val_idx = np.concatenate(val)
    h = hashlib.sha256(f"{pool_sha256}\n{shots}\n{seed}\n".encode())
    h.update(",".join(map(str, train_idx.tolist())).encode())
    return FewShotSplit(shots=shots, seed=seed, train=train_idx, val=val_idx, sha256=h.hexdigest())
