"""Double DQN with prioritised replay on Gymnasium's CartPole-v1: solved (mean return >= 475 in 100 episodes).

A custom training loop over two networks, written with bpcore's loop API:
the online network 4-128-128-2 picks the next action and a target network
(a ``clone()``, moved towards the online one by a Polyak update
``copy_from(online, tau)`` after every step, or copied every
``--hard-update`` steps) evaluates it (``bpcore.rl.DoubleQTarget``); the
loss is the Huber loss on the Q-values of the actions taken, weighted by the
prioritised replay's importance weights (``bpcore.rl.ChosenHuber``: gather,
Huber, weighting and the gradient's scatter in one call); gradients are
clipped to norm 10 and Adam takes the step.  Exploration is epsilon-greedy,
decaying linearly.

Every ``--check-every`` episodes in which the agent balanced the pole to the
limit, the greedy policy is tried on a few episodes and the best one so far
is kept (a ``clone()``); training stops once it holds the pole for the whole
500 steps of every trial episode.  The kept policy is then evaluated on 100
fresh episodes.  Exits with status 1 below the target.

    python examples/dqn_cartpole.py [--seed 0] [--max-steps 60000] [--plot curve.png]

Needs ``pip install 'bpcore[rl]'`` (Gymnasium).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from blas_threads import limit_blas_threads

import bpcore
from bpcore.cli import run_script
from bpcore.layers import Dense, ReLU
from bpcore.optim import Adam, clip_grad_norm
from bpcore.rl import ChosenHuber, DoubleQTarget, PrioritizedReplayBuffer, Transitions

SOLVED = 475.0
EPISODE_LIMIT = 500
TIMES = {"learning": 0.0, "trials": 0.0}  # seconds spent, for the report


def q_network(observations: int, actions: int, hidden: int, seed: int, device: Any) -> bpcore.Network:
    layers = [Dense(observations, hidden, init="he_uniform"), ReLU(),
              Dense(hidden, hidden, init="he_uniform"), ReLU(), Dense(hidden, actions)]
    return bpcore.Network(layers, seed=seed, device=device)


class DoubleDQN:
    """The online and target networks and one learning update (Double DQN, Huber, clipping, Adam, Polyak)."""

    def __init__(
        self,
        observations: int,
        actions: int,
        *,
        hidden: int = 128,
        lr: float = 1e-3,
        gamma: float = 0.99,
        tau: float = 0.005,
        max_grad_norm: float = 10.0,
        seed: int = 0,
        device: Any = None,
    ) -> None:
        self.online = q_network(observations, actions, hidden, seed, device)
        self.target = self.online.clone()
        self.parameters = self.online.parameters()  # one list, reused by every clip
        self.optimizer = Adam(self.parameters, lr=lr)
        self.gamma, self.tau, self.max_grad_norm = gamma, tau, max_grad_norm
        self.td_target = DoubleQTarget(gamma)
        self.loss = ChosenHuber()  # Huber on the chosen actions' Q-values, importance-weighted

    def act(self, observation: np.ndarray) -> int:
        """The greedy action for one observation."""
        q = self.online.forward(self.online.as_input(observation[None]), check=False)
        return int(q[0].argmax())

    def update(self, batch: Transitions, *, soft_update: bool = True) -> Any:
        """One learning step on ``batch``; returns the TD errors (for the replay priorities)."""
        online, target = self.online, self.target
        # Double DQN: the online network chooses the next action, the target network values it.
        td_target = self.td_target(online.forward(batch.next_observations, check=False),
                                   target.forward(batch.next_observations, check=False),
                                   batch.rewards, batch.dones, check=False)
        q = online.forward(batch.observations, training=True, check=False)
        self.loss(q, batch.actions, td_target, batch.weights, check=False)  # mean(weight * huber)
        # accumulate=False writes the gradients instead of adding them: no zero_grad() needed.
        online.backward(self.loss.backward(), check=False, input_grad=False, accumulate=False)
        clip_grad_norm(self.parameters, self.max_grad_norm)
        self.optimizer.step()
        if soft_update:
            target.copy_from(online, tau=self.tau)
        return np.array(self.online.backend.to_numpy(self.loss.td_errors))  # a host copy, for the priorities


def greedy_returns(agent: DoubleDQN, env: Any, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of the greedy policy on ``episodes`` episodes seeded from ``seed``."""
    returns = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(agent.act(observation))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def train(args: argparse.Namespace, gym: Any) -> tuple[DoubleDQN, list[float], list[int], float]:
    env = gym.make("CartPole-v1")
    trial_env = gym.make("CartPole-v1")
    n_obs, n_actions = env.observation_space.shape[0], int(env.action_space.n)
    agent = DoubleDQN(n_obs, n_actions, hidden=args.hidden, lr=args.lr, gamma=args.gamma, tau=args.tau,
                      seed=args.seed, device=args.device)
    buffer = PrioritizedReplayBuffer(args.buffer, (n_obs,), alpha=0.6, beta=0.4, beta_steps=args.max_steps,
                                     device=args.device, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    observation, _ = env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    returns: list[float] = []
    ends: list[int] = []
    best, best_score = agent.online.clone(), -1.0
    episode_return, full_episodes = 0.0, 0
    for step in range(1, args.max_steps + 1):
        epsilon = max(args.epsilon_final, 1.0 - step / args.epsilon_steps * (1.0 - args.epsilon_final))
        action = int(rng.integers(n_actions)) if rng.random() < epsilon else agent.act(observation)
        following, reward, terminated, truncated, _ = env.step(action)
        # A time-limit truncation is not a terminal state: bootstrap through it.
        buffer.add(observation, action, reward, following, terminated)
        episode_return += float(reward)
        observation = following
        if terminated or truncated:
            returns.append(episode_return)
            ends.append(step)
            full_episodes = full_episodes + 1 if episode_return >= EPISODE_LIMIT else 0
            episode_return = 0.0
            observation, _ = env.reset()
            if full_episodes >= args.check_every:
                full_episodes = 0
                trial_started = time.perf_counter()
                score = float(np.mean(greedy_returns(agent, trial_env, args.trials, seed=10_000 + step)))
                TIMES["trials"] += time.perf_counter() - trial_started
                if score > best_score:
                    best, best_score = agent.online.clone(), score
                if score >= EPISODE_LIMIT:
                    break
        if step >= args.learning_starts:
            update_started = time.perf_counter()
            batch = buffer.sample(args.batch_size)
            hard = args.hard_update > 0
            td_error = agent.update(batch, soft_update=not hard)
            buffer.update_priorities(batch.indices, td_error)
            if hard and step % args.hard_update == 0:
                agent.target.copy_from(agent.online)
            TIMES["learning"] += time.perf_counter() - update_started
    agent.online = best if best_score >= 0 else agent.online
    return agent, returns, ends, best_score


def plot(path: str, returns: list[float], ends: list[int], evaluation: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(ends, returns, lw=0.8, alpha=0.5, label="episode return (training, with exploration)")
    if len(returns) >= 10:
        smooth = np.convolve(returns, np.ones(10) / 10, mode="valid")
        axes.plot(ends[9:], smooth, lw=1.5, label="mean of the last 10")
    axes.axhline(SOLVED, color="k", ls="--", lw=0.8, label=f"solved ({SOLVED:.0f})")
    axes.set(xlabel="environment steps", ylabel="return",
             title=f"Double DQN on CartPole-v1: greedy evaluation {evaluation:.1f} over 100 episodes")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: BPCORE_DEVICE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=60_000, help="environment steps at most")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--tau", type=float, default=0.005, help="Polyak rate of the target network")
    parser.add_argument("--hard-update", type=int, default=0,
                        help="copy the target network every N steps instead of Polyak updates (0: Polyak)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--buffer", type=int, default=50_000)
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--epsilon-steps", type=int, default=10_000)
    parser.add_argument("--epsilon-final", type=float, default=0.02)
    parser.add_argument("--check-every", type=int, default=2,
                        help="try the greedy policy after this many consecutive full-length episodes")
    parser.add_argument("--trials", type=int, default=10, help="episodes per greedy trial")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes")
    parser.add_argument("--target", type=float, default=SOLVED, help="required mean evaluation return")
    parser.add_argument("--plot", metavar="FILE.png", help="write the learning curve to FILE.png")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads (default 1: these matrices are too small for more to pay off)")
    args = parser.parse_args(argv)
    limit_blas_threads(args.blas_threads)
    try:
        import gymnasium as gym
    except ImportError:
        print("this example needs Gymnasium: pip install 'bpcore[rl]'", file=sys.stderr)
        return 2

    started = time.perf_counter()
    agent, returns, ends, trial = train(args, gym)
    trained = time.perf_counter() - started
    scores = greedy_returns(agent, gym.make("CartPole-v1"), args.episodes, seed=1_000_000 + args.seed)
    mean = float(np.mean(scores))
    print(f"device {agent.online.device}: {len(returns)} training episodes, {ends[-1] if ends else 0} steps "
          f"in {trained:.1f}s ({TIMES['learning']:.1f}s learning, {TIMES['trials']:.1f}s greedy trials; "
          f"best trial {trial:.1f})")
    print(f"evaluation: mean return {mean:.1f} over {args.episodes} episodes "
          f"(min {min(scores):.0f}, target {args.target:.0f}); total {time.perf_counter() - started:.1f}s")
    if args.plot:
        plot(args.plot, returns, ends, mean)
        print(f"learning curve written to {args.plot}")
    if mean < args.target:
        print(f"not solved: mean return {mean:.1f} is below {args.target:.0f}", file=sys.stderr)
        return 1
    print("solved")
    return 0


if __name__ == "__main__":
    run_script(main)  # a device error (e.g. --device cuda without a GPU): one line, status 2
