"""Data-parallel training over real MPI jobs (``mpiexec -n 2`` and ``-n 3``) started from the tests.

Each job runs tests/mpi_job.py on every rank; the one-process reference is
trained here, in the test process, on the same global batches.  The jobs use
the generic kernels (``BPCORE_KERNELS=generic``) so that a rank starts in
well under a second; what is tested is the distribution, not the kernels
(the example test below runs with the compiled kernels).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bpcore
from bpcore.distributed.data_parallel import share_bounds

ROOT = Path(__file__).resolve().parent.parent
JOB = Path(__file__).resolve().parent / "mpi_job.py"

sys.path.insert(0, str(JOB.parent))
from mpi_job import FIT, masked_problem, problem, state  # noqa: E402

try:
    import mpi4py  # noqa: F401

    MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    WHY = "" if MPIEXEC else "mpi4py is installed but no mpiexec was found (pip install 'bpcore[mpi]')"
except ImportError:
    MPIEXEC, WHY = None, "needs mpi4py and an MPI (pip install 'bpcore[mpi]')"

needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason=WHY)


def mpirun(ranks: int, *arguments: str, timeout: float = 60, kernels: str = "generic",
           script: Path = JOB, device: str = "cpu") -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, BPCORE_DEVICE=device, BPCORE_KERNELS=kernels)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    assert MPIEXEC is not None
    return subprocess.run(
        [MPIEXEC, "-n", str(ranks), sys.executable, str(script), *arguments],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout,
    )


def train_job(ranks: int, out: Path, *options: str, device: str = "cpu") -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    result = mpirun(ranks, "train", str(out), *options, device=device)
    assert result.returncode == 0, result.stdout + result.stderr
    ranks_found = []
    for rank in range(ranks):
        with np.load(out / f"rank{rank}.npz") as arrays:
            found = {name: arrays[name] for name in arrays.files}
        found.update(json.loads((out / f"rank{rank}.json").read_text()))
        ranks_found.append(found)
    return ranks_found


def reference(epochs: int = 3, *, samples: int = 50, batch_size: int = 16, resume: Any = None,
              **options: Any) -> tuple[Any, Any]:
    network, optimizer, x, y = problem(samples, batch_norm=options.pop("batch_norm", False))
    history = network.fit(x, y, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                          resume_from=resume, **FIT, **options)
    return state(network), history.history


def assert_close_to(found: dict[str, Any], expected: dict[str, Any], history: dict[str, list[float]]) -> None:
    for name, value in expected.items():
        np.testing.assert_allclose(found[name], value, rtol=1e-12, atol=1e-13, err_msg=name)
    assert set(found["history"]) == set(history)
    for key, values in history.items():
        np.testing.assert_allclose(found["history"][key], values, rtol=1e-12, atol=1e-14, err_msg=key)


def assert_identical_ranks(ranks: list[dict[str, Any]]) -> None:
    for other in ranks[1:]:
        for name in ranks[0]:
            if isinstance(ranks[0][name], np.ndarray):
                assert np.array_equal(other[name], ranks[0][name]), name  # bit for bit
        assert other["history"] == ranks[0]["history"]


def test_shares_split_every_batch_disjointly_and_evenly() -> None:
    for size in range(0, 20):
        for world in (1, 2, 3, 5):
            shares = [share_bounds(7, 7 + size, rank, world) for rank in range(world)]
            assert shares[0][0] == 7 and shares[-1][1] == 7 + size
            assert all(a[1] == b[0] for a, b in itertools.pairwise(shares))
            lengths = [hi - lo for lo, hi in shares]
            assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)


def test_needs_init_before_rank() -> None:
    from bpcore import distributed

    if distributed.is_initialized():
        pytest.skip("this process already joined an MPI job")
    with pytest.raises(RuntimeError, match="init"):
        distributed.rank()


@needs_mpi
@pytest.mark.parametrize(("ranks", "split"), [(2, 0.2), (3, 0.0)])
def test_ranks_train_like_one_process_on_the_same_global_batches(
    ranks: int, split: float, tmp_path: Path
) -> None:
    # 50 samples in batches of 16: global batches 16, 16, 16 and a last one of 2, which on 3 ranks
    # leaves rank 2 an empty share; shares of 16 are 8+8 or 6+5+5.  With validation_split=0.2 on
    # 2 ranks: 40 training samples (16, 16, 8) and 10 validation samples, 5 per rank.
    found = train_job(ranks, tmp_path, "--epochs", "3", "--validation-split", str(split))
    expected, history = reference(3, validation_split=split)
    assert ("val_loss" in history) == bool(split)
    assert_close_to(found[0], expected, history)
    assert_identical_ranks(found)
    assert found[0]["world"] == ranks


@needs_mpi
def test_padded_sequences_with_a_mask_train_like_one_process(tmp_path: Path) -> None:
    # Each rank's share of a batch takes its rows of the mask, and so do the validation shares.
    found = train_job(2, tmp_path, "--masked", "--epochs", "2", "--validation-split", "0.2")
    network, optimizer, x, y, mask = masked_problem(50)
    history = network.fit(x, y, optimizer=optimizer, epochs=2, batch_size=16, validation_split=0.2,
                          mask=mask, **FIT)
    assert_close_to(found[0], state(network), history.history)
    assert_identical_ranks(found)
    unmasked, optimizer, *_ = masked_problem(50)
    unmasked.fit(x, y, optimizer=optimizer, epochs=2, batch_size=16, validation_split=0.2, **FIT)
    assert not np.allclose(found[0]["parameters"], state(unmasked)["parameters"])


@needs_mpi
def test_global_batches_smaller_than_the_world(tmp_path: Path) -> None:
    found = train_job(3, tmp_path, "--epochs", "2", "--samples", "7", "--batch-size", "2")
    expected, history = reference(2, samples=7, batch_size=2)  # last global batch: 1 sample on 3 ranks
    assert_close_to(found[0], expected, history)
    assert_identical_ranks(found)


@needs_mpi
def test_nccl_path_makes_one_all_reduce_per_step(tmp_path: Path) -> None:
    """The NCCL code path against a stand-in communicator (no GPU here): pointers, counts, types."""
    found = train_job(2, tmp_path, "--epochs", "2", "--fake-nccl")
    expected, history = reference(2)
    assert_close_to(found[0], expected, history)
    assert_identical_ranks(found)
    steps = 4  # 50 samples in batches of 16
    assert found[0]["calls"].count("allReduce") == 2 * steps
    assert found[0]["calls"].count("bcast") == 1  # the parameters, once, from rank 0


@needs_mpi
def test_batch_norm_statistics_end_alike_on_every_rank(tmp_path: Path) -> None:
    found = train_job(2, tmp_path, "--epochs", "2", "--batch-norm", "--validation-split", "0.2",
                      "--batch-size", "100")  # also: one full batch, 20 samples per rank
    assert_identical_ranks(found)
    assert any(name.endswith("running_mean") for name in found[0])
    result = mpirun(3, "train", str(tmp_path), "--batch-norm", "--samples", "50", "--batch-size", "4")
    assert result.returncode != 0 and "at least 2 samples per rank" in result.stderr


@needs_mpi
def test_a_failing_rank_ends_the_job_promptly_with_its_error(tmp_path: Path) -> None:
    started = time.perf_counter()
    result = mpirun(2, "fail", str(tmp_path), "--epochs", "50", timeout=60)
    seconds = time.perf_counter() - started
    assert result.returncode != 0
    assert "injected failure on rank 1" in result.stderr
    assert "rank 1 of 2 failed" in result.stderr
    assert seconds < 20, f"the job took {seconds:.1f}s to end"
    assert not (tmp_path / "rank0.npz").exists()


@needs_mpi
def test_different_networks_on_the_ranks_are_refused(tmp_path: Path) -> None:
    result = mpirun(2, "mismatch", str(tmp_path))
    assert result.returncode != 0
    assert "the ranks hold different networks" in result.stderr and "rank 1 has" in result.stderr


@needs_mpi
def test_checkpoint_of_two_ranks_resumes_in_one_process_and_on_three(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    train_job(2, tmp_path / "first", "--epochs", "2", "--checkpoints", str(checkpoints))
    written = checkpoints.parent / "checkpoints-rank0"
    assert not (checkpoints.parent / "checkpoints-rank1").exists()  # rank 0 writes, no other rank
    latest = bpcore.latest_checkpoint(written)
    assert latest is not None and latest.endswith("epoch-0002.bpcore")
    expected, history = reference(4)  # uninterrupted, one process

    resumed, resumed_history = reference(4, resume=latest)  # one process, without MPI
    np.testing.assert_allclose(resumed["parameters"], expected["parameters"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(resumed_history["loss"], history["loss"], rtol=1e-12)

    found = train_job(3, tmp_path / "three", "--epochs", "4", "--resume", latest)
    assert_close_to(found[0], expected, history)
    assert_identical_ranks(found)


@needs_mpi
@pytest.mark.slow
def test_digits_example_on_two_ranks_matches_one_process() -> None:
    script = ROOT / "examples" / "distributed_digits.py"
    result = mpirun(2, "--epochs", "8", "--target", "0.95", "--compare", script=script, kernels="fused",
                    timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    distributed_line, single_line = result.stdout.strip().splitlines()
    assert distributed_line.startswith("2 rank(s) on cpu")
    accuracy = distributed_line.rsplit("test accuracy ", 1)[1]
    assert f"test accuracy {accuracy};" in single_line


@needs_mpi
@pytest.mark.gpu
def test_nccl_on_a_gpu_trains_like_one_process(tmp_path: Path) -> None:
    """Real NCCL through CuPy: one rank per GPU (one rank where there is one GPU)."""
    from bpcore.distributed.collectives import nccl_available

    if not nccl_available():
        pytest.skip("CuPy cannot load NCCL here (pip install 'bpcore[nccl-cuda13]')")
    from bpcore.backends import probe_cuda

    ranks = min(probe_cuda().count, 2)
    found = train_job(ranks, tmp_path, "--epochs", "2", device="cuda")
    assert found[0]["collectives"] == "nccl" and found[0]["device"] == "cuda:0"
    expected, history = reference(2)
    assert_close_to(found[0], expected, history)
    assert_identical_ranks(found)


def test_each_rank_device_comes_from_the_argument_or_bpcore_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from bpcore.backends import CPU, DeviceError, probe_cuda
    from bpcore.distributed.context import choose_device

    monkeypatch.delenv("BPCORE_DEVICE", raising=False)
    assert choose_device(None, 1, 2) == CPU  # unset: the CPU, as everywhere in bpcore
    monkeypatch.setenv("BPCORE_DEVICE", "cpu")
    assert choose_device(None, 3, 4) == CPU
    if probe_cuda().count == 0:
        assert choose_device("auto", 1, 2) == CPU
        with pytest.raises(DeviceError, match="cuda"):
            choose_device("cuda", 0, 1)
    else:
        assert str(choose_device("cuda", 0, 1)) == "cuda:0"
        count = probe_cuda().count  # more local ranks than GPUs: placement_problem refuses the sharing
        assert str(choose_device("cuda", count, count + 1)) == "cuda:0"


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that shows this process two GPUs, for the placement rules (nothing touches a GPU)."""
    from bpcore.backends import device as device_module
    from bpcore.distributed import placement

    probe = device_module.CudaProbe(2, "2 CUDA GPU(s)")
    monkeypatch.setattr(device_module, "probe_cuda", lambda: probe)
    monkeypatch.setattr(placement, "probe_cuda", lambda: probe)


@pytest.mark.usefixtures("two_gpus")
def test_cuda_gives_each_local_rank_a_gpu_modulo_the_gpus_it_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    from bpcore.backends import Device
    from bpcore.distributed.placement import by_local_rank, choose_device

    monkeypatch.setenv("BPCORE_DEVICE", "cuda")
    assert [choose_device(None, r, 3) for r in range(3)] == [Device("cuda", i) for i in (0, 1, 0)]
    assert choose_device("auto", 1, 2) == Device("cuda", 1) and by_local_rank(None)
    assert choose_device("cuda:1", 0, 2) == Device("cuda", 1) and not by_local_rank("cuda:1")


def test_ranks_placed_on_one_gpu_are_refused_unless_named_and_never_join_nccl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bpcore.backends import Device, DeviceError
    from bpcore.distributed import placement
    from bpcore.distributed.collectives import DistributedError

    monkeypatch.setattr(placement, "nccl_module", lambda: None)  # NCCL "loads"
    gpu = Device("cuda", 0)
    shared, own = ["0000:3B:00.0", "0000:3B:00.0", "0000:86:00.0"], ["0000:3B:00.0", "0000:86:00.0"]
    assert placement.sharing_ranks(shared, 1) == [0, 1] and placement.sharing_ranks(shared, 2) == []
    assert placement.sharing_ranks([None, None], 0) == []  # CPU ranks share nothing
    refused = placement.placement_problem(shared, 0, 3, True, gpu)
    assert refused is not None and "local ranks [0, 1]" in refused and "2 GPU(s)" in refused
    assert placement.placement_problem(shared, 0, 3, False, gpu) is None  # cuda:N named: the user's choice
    assert placement.placement_problem(own, 1, 2, True, gpu) is None
    with pytest.raises(DeviceError, match=r"rank 1 \(and 1 more rank\(s\)\): local ranks"):
        placement.refuse_placement([None, refused, refused])
    placement.refuse_placement([None, None])
    # NCCL refuses two ranks on one GPU (ncclInvalidUsage), and a rank without a GPU or without NCCL.
    assert "share its GPU" in str(placement.nccl_obstacle(gpu, shared, 1))
    assert placement.nccl_obstacle(gpu, own, 0) is None
    assert placement.nccl_obstacle(Device("cpu"), [None], 0) == "its device is cpu"

    def missing() -> None:
        raise DistributedError("CuPy could not load the NCCL library")

    monkeypatch.setattr(placement, "nccl_module", missing)
    assert "could not load" in str(placement.nccl_obstacle(gpu, own, 0))


def test_every_rank_chooses_nccl_or_mpi_alike_from_what_all_ranks_found() -> None:
    from bpcore.distributed.collectives import DistributedError
    from bpcore.distributed.placement import use_nccl

    assert use_nccl("auto", [None, None]) and use_nccl("nccl", [None, None])
    assert not use_nccl("auto", [None, "its device is cpu"])  # MPI on every rank, not NCCL on rank 0
    assert not use_nccl("mpi", [None, None])
    with pytest.raises(DistributedError, match="rank 1 cannot use NCCL: no NCCL"):
        use_nccl("nccl", [None, "no NCCL", "no NCCL"])
