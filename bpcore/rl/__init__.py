"""Reinforcement-learning helpers: experience replay, uniform and prioritised, and the DQN loss and target."""

from .q_learning import ChosenHuber, DoubleQTarget
from .replay import PrioritizedReplayBuffer, ReplayBuffer, Transitions
from .sum_tree import SumTree

__all__ = [
    "ChosenHuber", "DoubleQTarget", "PrioritizedReplayBuffer", "ReplayBuffer", "SumTree", "Transitions",
]
