"""Reinforcement-learning helpers: experience replay, uniform and prioritised."""

from .replay import PrioritizedReplayBuffer, ReplayBuffer, Transitions
from .sum_tree import SumTree

__all__ = ["PrioritizedReplayBuffer", "ReplayBuffer", "SumTree", "Transitions"]
