"""A sum tree over a fixed number of non-negative priorities, vectorised over batches.

The priorities sit in the leaves of a complete binary tree stored as one
array (node ``k`` has children ``2k`` and ``2k + 1``; the root is node 1);
every inner node holds the sum of its children.  Updating a batch of
priorities and drawing a batch of leaves in proportion to them each take
``O(log n)`` vectorised NumPy steps: one per level of the tree, never a
Python loop over the batch.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """``capacity`` priorities (float64, initially 0) with prefix-sum sampling."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._leaves = 1 << max(0, (self.capacity - 1).bit_length())
        self._depth = self._leaves.bit_length() - 1
        self._tree = np.zeros(2 * self._leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        """The sum of all priorities."""
        return float(self._tree[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """The priorities at ``indices``."""
        return self._tree[self._leaves + np.asarray(indices, dtype=np.int64)]

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priorities at ``indices`` (for a repeated index the last value wins)."""
        nodes = self._leaves + np.asarray(indices, dtype=np.int64)
        self._tree[nodes] = priorities
        for _ in range(self._depth):
            nodes = np.unique(nodes >> 1)
            self._tree[nodes] = self._tree[2 * nodes] + self._tree[2 * nodes + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each value in ``mass`` (in ``[0, total)``), the leaf whose prefix-sum interval holds it.

        Only leaves of non-zero priority are ever returned: the descent never
        enters a subtree whose sum is zero, even where rounding would point there.
        """
        tree = self._tree
        mass = np.array(mass, dtype=np.float64)
        nodes = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * nodes
            left_sum = tree[left]
            right = (mass >= left_sum) & (tree[left + 1] > 0)
            mass -= np.where(right, left_sum, 0.0)
            nodes = left + right
        return nodes - self._leaves
