"""Custom loops over several networks: bpcore against PyTorch eager on the CPU, side by side in one run.

* one DQN update (batch 64, network 4-128-128-2): online forward on the batch
  and on the next states, target forward, Huber loss on the chosen actions
  (importance-weighted), backward, gradient clipping to norm 10, Adam, Polyak
  update of the target network: exactly the update of ``examples/dqn_cartpole.py``;
* one WGAN iteration (batch 256, generator and critic 2-128-128): 5 critic
  steps with weight clipping and one generator step, RMSProp, data and noise
  drawn inside the iteration: exactly the iteration of ``examples/gan.py``.

Both libraries do the same work (the critic sees real and generated samples
as one batch in both; the generator step does not compute the critic's
weight gradients in either).  The two run interleaved, ``--repeats`` times,
so that a load change on the machine hits both; the script prints the median
time per update and the median, minimum and maximum of the per-repeat ratio.
Each library runs as a user gets it, in two settings, and the ratio is
taken between the faster of each (per repeat): PyTorch with its default
thread count and with one thread; bpcore with its matrix products on one
BLAS thread (what the examples do by default, and what a loaded machine
favours) and on the process's default BLAS thread count (the WGAN's 512 x
128 x 128 products gain from a second core on a quiet machine), as
``bpcore.bench.recurrent`` does.  ``--blas-threads N`` times bpcore on N
threads alone.

On a loaded machine (other processes competing for the cores) wall-clock
times measure the scheduler as much as the code; ``--clock cpu`` times
each update by the CPU time of the calling thread instead, with PyTorch on
one thread (so that all its work is on that thread, as all of bpcore's is).

    python benchmarks/several_nets.py [--repeats 15] [--clock wall|cpu] [--blas-threads N]
                                      [--json results.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> Any:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # the examples' shared helper
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def per_call_ms(
    function: Callable[[], Any], calls: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    started = clock()
    for _ in range(calls):
        function()
    return (clock() - started) / calls * 1e3


# --- DQN ---------------------------------------------------------------------------------
def dqn_batch(rng: np.random.Generator, n: int = 64) -> dict[str, np.ndarray]:
    return {
        "observations": rng.normal(size=(n, 4)).astype(np.float32),
        "actions": rng.integers(0, 2, size=n),
        "rewards": np.ones(n, np.float32),
        "next_observations": rng.normal(size=(n, 4)).astype(np.float32),
        "dones": (rng.random(n) < 0.05).astype(np.float32),
        "weights": rng.uniform(0.2, 1.0, size=n).astype(np.float32),
    }


def bpcore_dqn(data: dict[str, np.ndarray]) -> Callable[[], Any]:
    from bpcore.rl import Transitions

    example = load_example("dqn_cartpole")
    agent = example.DoubleDQN(4, 2, seed=0, device="cpu")
    batch = Transitions(**data, indices=np.arange(64))
    return lambda: agent.update(batch)


def torch_dqn(data: dict[str, np.ndarray]) -> Callable[[], Any]:
    import copy

    import torch
    from torch import nn
    from torch.nn import functional

    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
    target = copy.deepcopy(online)
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-3)
    online_params, target_params = list(online.parameters()), list(target.parameters())
    t = {key: torch.from_numpy(value) for key, value in data.items()}
    actions = t["actions"].unsqueeze(1)

    def update() -> Any:
        with torch.no_grad():
            best_next = online(t["next_observations"]).argmax(dim=1, keepdim=True)
            next_q = target(t["next_observations"]).gather(1, best_next).squeeze(1)
            td_target = t["rewards"] + 0.99 * (1.0 - t["dones"]) * next_q
        chosen = online(t["observations"]).gather(1, actions).squeeze(1)
        loss = (t["weights"] * functional.huber_loss(chosen, td_target, reduction="none")).mean()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(online_params, 10.0)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(target_params, online_params, 0.005)
        return (chosen - td_target).detach()

    return update


# --- WGAN --------------------------------------------------------------------------------
def bpcore_wgan() -> Callable[[], Any]:
    example = load_example("gan")
    generator = example.mlp([2, 128, 128, 2], 0, "cpu")
    critic = example.mlp([2, 128, 128, 1], 1, "cpu")
    gan = example.WGAN(generator, critic, batch_size=256, seed=0)
    real_batch = example.ring_sampler(critic, 2.0, 0.1, 0)
    return lambda: gan.iteration(real_batch)


def torch_wgan() -> Callable[[], Any]:
    import math

    import torch
    from torch import nn

    torch.manual_seed(0)

    def mlp(out: int) -> nn.Module:
        return nn.Sequential(
            nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, out)
        )

    generator, critic = mlp(2), mlp(1)
    g_optimizer = torch.optim.RMSprop(generator.parameters(), lr=5e-5)
    d_optimizer = torch.optim.RMSprop(critic.parameters(), lr=5e-5)
    critic_params = list(critic.parameters())
    angles = 2 * math.pi * torch.arange(8) / 8
    centres = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    n = 256

    def iteration() -> None:
        for _ in range(5):
            real = centres[torch.randint(0, 8, (n,))] + 0.1 * torch.randn(n, 2)
            with torch.no_grad():
                fake = generator(torch.randn(n, 2))
            scores = critic(torch.cat([real, fake]))
            loss = scores[n:].mean() - scores[:n].mean()
            d_optimizer.zero_grad()
            loss.backward()
            d_optimizer.step()
            with torch.no_grad():
                torch._foreach_clamp_min_(critic_params, -0.01)
                torch._foreach_clamp_max_(critic_params, 0.01)
        for p in critic_params:
            p.requires_grad_(False)
        g_loss = -critic(generator(torch.randn(n, 2))).mean()
        g_optimizer.zero_grad()
        g_loss.backward()
        g_optimizer.step()
        for p in critic_params:
            p.requires_grad_(True)

    return iteration


def default_blas_threads() -> int:
    """The process's BLAS thread count (what a user's products run on unless they limit it)."""
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return max(counts, default=1)


def bpcore_settings(clock: str, blas_threads: int | None) -> list[int]:
    """The BLAS thread counts bpcore is timed at: one and the default (one thread's CPU time: one only)."""
    if blas_threads is not None:
        return [blas_threads]
    if clock == "cpu":  # the CPU time of the timing thread would miss the other BLAS threads
        return [1]
    return sorted({1, default_blas_threads()})


def compare(
    name: str, ours: Callable[[], Any], theirs: Callable[[], Any], calls: int, repeats: int,
    clock: str = "wall", blas_threads: int | None = None,
) -> dict:
    import torch
    from threadpoolctl import threadpool_limits

    from bpcore.bench.timing import let_idle_threads_sleep

    default_threads = torch.get_num_threads()
    timer = CLOCKS[clock]
    settings = bpcore_settings(clock, blas_threads)
    if clock == "cpu":  # PyTorch on one thread throughout: no idle worker threads spinning beside bpcore
        torch.set_num_threads(1)
    for function in (ours, theirs):
        for _ in range(20):
            function()
    ours_rows: dict[int, list[float]] = {count: [] for count in settings}
    rows: dict[str, list[float]] = {"torch": [], "torch_1_thread": []}
    for _ in range(repeats):
        # Most threads first: OpenBLAS's threads, spinning for about 0.1 s after a product, then
        # share the cores with bpcore's own one-thread sample; PyTorch's samples start only once
        # they sleep (and bpcore's once PyTorch's threads do).
        let_idle_threads_sleep()
        for count in reversed(settings):
            with threadpool_limits(count, user_api="blas"):
                ours_rows[count].append(per_call_ms(ours, calls, timer))
        let_idle_threads_sleep()
        if clock == "wall":  # the CPU time of one thread would miss PyTorch's other threads
            torch.set_num_threads(default_threads)
            rows["torch"].append(per_call_ms(theirs, calls, timer))
        torch.set_num_threads(1)
        rows["torch_1_thread"].append(per_call_ms(theirs, calls, timer))
    torch.set_num_threads(default_threads)
    if not rows["torch"]:
        rows["torch"] = rows["torch_1_thread"]
    # Per repeat, the faster setting of each library.
    best_ours = [min(samples) for samples in zip(*ours_rows.values(), strict=True)]
    triples = zip(best_ours, rows["torch"], rows["torch_1_thread"], strict=True)
    ratios = [min(t, t1) / b for b, t, t1 in triples]
    medians = {count: statistics.median(samples) for count, samples in ours_rows.items()}
    faster = min(medians, key=medians.__getitem__)
    result = {
        "name": name,
        "ms": {
            "bpcore": medians[faster],
            **{f"bpcore_{count}_blas_threads": median for count, median in medians.items()},
            **{key: statistics.median(values) for key, values in rows.items()},
        },
        "speedup_median": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
        "repeats": repeats,
        "calls_per_repeat": calls,
        "torch_threads": default_threads if clock == "wall" else 1,
        "bpcore_blas_threads": settings,
        "bpcore_faster_blas_threads": faster,
        "clock": clock,
    }
    ms = result["ms"]
    ours_text = ", ".join(f"{medians[count]:.3f} ms ({count} BLAS thread{'s' if count > 1 else ''})"
                          for count in settings)
    print(f"{name} ({clock} clock): bpcore {ours_text}, "
          f"torch {ms['torch']:.3f} ms "
          f"({result['torch_threads']} threads), torch {ms['torch_1_thread']:.3f} ms (1 thread); "
          f"bpcore faster by {result['speedup_median']:.2f}x "
          f"(min {result['speedup_min']:.2f}x, max {result['speedup_max']:.2f}x over {repeats} repeats; "
          "faster setting of each, per repeat)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall-clock time, or the CPU time of the timing thread (for a loaded machine)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="BLAS threads for bpcore's matrix products (default: the faster of 1 and the "
                             "process's default, per repeat; with --clock cpu, 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.blas_threads is not None and args.blas_threads < 1:
        parser.error(f"--blas-threads: expected a positive integer, got {args.blas_threads}")
    if args.blas_threads is not None and args.blas_threads > 1 and args.clock == "cpu":
        parser.error("--blas-threads above 1 needs --clock wall (one thread's CPU time misses the others)")
    try:
        import torch
    except ImportError:
        print("this comparison needs PyTorch (pip install torch)", file=sys.stderr)
        return 2
    data = dqn_batch(np.random.default_rng(0))
    results = [
        compare("DQN update", bpcore_dqn(data), torch_dqn(data), calls=100, repeats=args.repeats,
                clock=args.clock, blas_threads=args.blas_threads),
        compare("WGAN iteration", bpcore_wgan(), torch_wgan(), calls=10, repeats=args.repeats,
                clock=args.clock, blas_threads=args.blas_threads),
    ]
    if args.json:
        Path(args.json).write_text(json.dumps({"torch": torch.__version__, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
