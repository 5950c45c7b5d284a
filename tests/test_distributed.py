"""Data parallelism in one process: K thread ranks (tests/thread_ranks.py) train every
model family exactly as one process does with the same global batch (float64, on each
backend), sharded noise, the configuration check, agreement on setup errors, BatchNorm
with and without --sync-bn, BLAS threads per rank, the launcher's command line, and
the clear errors when MPI is missing. The same code under a real `mpirun` is tested in
tests/test_distributed_mpi.py."""
import signal
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan import distributed
from minigan.distributed import DataParallel, DistributedError, agree, rows_of
from minigan.run import cli
from minigan.run.launch import mpirun_command
from minigan.run.loop import deferred_interrupt

from test_vaegan import conv_networks, mlp_networks
from thread_ranks import ThreadRanks

STEPS = 3
GLOBAL_BATCH = 8


def gan(be, loss="non_saturating", batch_norm=False, pack=1):
    """A GAN on (2,) data, latent 3, BatchNorm in both networks when asked."""
    norm = [mg.BatchNorm(8)] if batch_norm else []
    G = mg.Sequential([mg.Dense(3, 8), *norm, mg.ReLU(), mg.Dense(8, 2)], backend=be)
    D = mg.Sequential([mg.Dense(2 * pack, 8), *norm, mg.LeakyReLU(0.2), mg.Dense(8, 1)], backend=be)
    return mg.GAN(G, D, loss=loss, pack=pack)


def two_headed_gan(be):
    """D with two heads (`Branches`), BatchNorm inside the first: synchronised like any other."""
    G = mg.Sequential([mg.Dense(3, 8), mg.ReLU(), mg.Dense(8, 2)], backend=be)
    D = mg.Sequential([mg.Branches([[mg.Dense(2, 8), mg.BatchNorm(8), mg.LeakyReLU(0.2), mg.Dense(8, 1)],
                                    [mg.Dense(2, 5), mg.Tanh(), mg.Dense(5, 1)]])], backend=be)
    return mg.GAN(G, D)


def vae(be):
    E = mg.Sequential([mg.Dense(4, 6), mg.Tanh(), mg.Dense(6, 4)], backend=be)
    G = mg.Sequential([mg.Dense(2, 6), mg.Tanh(), mg.Dense(6, 4)], backend=be)
    return mg.VAE(E, G, likelihood="gaussian")


FAMILIES = {
    "gan": (lambda be: gan(be), (2,)),
    "gan-wgan-gp-pack2": (lambda be: gan(be, loss="wgan-gp", pack=2), (2,)),  # d_steps 5, uniform draws
    "gan-batchnorm": (lambda be: gan(be, batch_norm=True), (2,)),
    "gan-two-heads-batchnorm": (two_headed_gan, (2,)),
    "vae": (vae, (4,)),
    "vaegan-batchnorm": (lambda be: mg.VAEGAN(*mlp_networks(be, decoder_batch_norm=True), feature_layer=2), (4,)),
    "vaegan-conv": (lambda be: mg.VAEGAN(*conv_networks(be), feature_layer=2), (4, 4, 1)),
}


def global_batches(model, shape):
    """The global batches of STEPS steps, one list per step (d_steps of them)."""
    rng = np.random.default_rng(7)
    return [[rng.uniform(-1, 1, (GLOBAL_BATCH, *shape)) for _ in range(model.batches_per_step)]
            for _ in range(STEPS)]


def assert_close(state, expected, rtol=1e-10):
    """Every array within rtol of the largest entry of its network (or optimizer): a bias
    before BatchNorm has no gradient and stays at round-off, where an array's own scale
    would mislead. Integer arrays (step counts) equal."""
    assert state.keys() == expected.keys()
    for name, value in expected.items():
        if value.dtype.kind != "f":
            assert np.array_equal(state[name], value), name
            continue
        group = name.split("/")[0]
        scale = max(float(np.max(np.abs(v))) for key, v in expected.items()
                    if key.startswith(group) and v.dtype.kind == "f")
        assert np.max(np.abs(state[name] - value)) <= rtol * scale, name


def train_on_ranks(size, make, shape, backend_name, sync_bn=True):
    """Trains make(backend) for STEPS steps on `size` thread ranks; returns each rank's
    (state, stats of the last step)."""
    def work(comm):
        model = make(mg.get_backend(backend_name, "float64", seed=comm.rank))  # rank 0's weights win
        parallel = DataParallel(model, comm, {"test": "same"}, sync_bn=sync_bn)
        for batches in global_batches(model, shape):
            stats, _ = parallel.train_step(batches if len(batches) > 1 else batches[0])
        return model.state_dict(), stats
    return ThreadRanks(size).run(work)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_two_and_four_ranks_compute_what_one_process_computes(family, backend_name):
    make, shape = FAMILIES[family]
    model = make(mg.get_backend(backend_name, "float64", seed=0))
    for batches in global_batches(model, shape):
        stats = model.train_step(batches if len(batches) > 1 else batches[0])
    expected = model.state_dict()
    for size in (2, 4):
        ranks = train_on_ranks(size, make, shape, backend_name)
        for state, rank_stats in ranks:
            assert_close(state, expected)
            assert rank_stats == pytest.approx(stats, rel=1e-10, abs=1e-12)
        for state, _ in ranks[1:]:  # every rank holds the same bits
            assert all(np.array_equal(state[name], ranks[0][0][name]) for name in state)


def test_without_sync_bn_each_rank_normalises_its_own_rows_but_ranks_stay_identical():
    make, shape = FAMILIES["gan-batchnorm"]
    model = make(mg.get_backend("numpy", "float64", seed=0))
    for batches in global_batches(model, shape):
        model.train_step(batches[0])
    ranks = train_on_ranks(2, make, shape, "numpy", sync_bn=False)
    first, second = ranks[0][0], ranks[1][0]
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert not np.allclose(first["generator/0.W"], model.state_dict()["generator/0.W"], rtol=1e-10, atol=0)


def test_each_optimizer_step_averages_its_gradient_with_one_all_reduce():
    def work(comm):
        model = gan(mg.get_backend("numpy", "float64", seed=0))
        parallel = DataParallel(model, comm, {}, sync_bn=False)
        before = comm.allreduce_calls
        parallel.train_step(np.ones((GLOBAL_BATCH, 2)))
        return comm.allreduce_calls - before
    # one for D's gradient, one for G's, one for the statistics and the stop flag
    assert ThreadRanks(2).run(work) == [3, 3]


def test_a_stop_request_on_one_rank_stops_every_rank_after_the_same_step():
    def work(comm):
        parallel = DataParallel(gan(mg.get_backend("numpy", "float64", seed=0)), comm, {})
        return [parallel.train_step(np.ones((GLOBAL_BATCH, 2)), stop=(comm.rank == 1 and step == 1))[1]
                for step in range(3)]
    assert ThreadRanks(2).run(work) == [[False, True, False]] * 2


def test_ranks_with_different_configurations_are_refused_naming_what_differs():
    def work(comm):
        DataParallel(gan(mg.get_backend("numpy", "float64", seed=0)), comm,
                     {"lr": 2e-4 if comm.rank == 0 else 1e-3, "seed": 0})
    with pytest.raises(DistributedError, match=r"rank 1 has lr=0\.001 \(rank 0: 0\.0002\)"):
        ThreadRanks(2).run(work)


def test_setup_errors_on_some_ranks_raise_on_every_rank_naming_the_rank():
    def work(comm):
        def read():
            if comm.rank == 1:
                raise FileNotFoundError("checkpoint not found: runs/x/checkpoint.npz")
            return "ok"
        with pytest.raises(DistributedError, match="rank 1: checkpoint not found"):
            agree(comm, read)
        return "raised"
    assert ThreadRanks(3).run(work) == ["raised"] * 3
    assert agree(None, lambda: 5) == 5


def test_rank_0_state_is_broadcast_at_start():
    def work(comm):
        model = gan(mg.get_backend("numpy", "float64", seed=10 + comm.rank))
        model.steps = 4 if comm.rank == 0 else 0
        DataParallel(model, comm, {})
        return model.state_dict(), model.steps, model.backend.rng.random()
    (first, steps0, draw0), (second, steps1, draw1) = ThreadRanks(2).run(work)
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert steps0 == steps1 == 4 and draw0 == draw1


@given(ranks=st.integers(1, 4), rows=st.integers(1, 5), width=st.integers(1, 3))
def test_sharded_draws_are_the_rows_of_one_global_draw(ranks, rows, width):
    whole = mg.get_backend("numpy", "float64", seed=3)
    expected_normal, expected_uniform = whole.standard_normal((ranks * rows, width)), whole.uniform((ranks * rows, 1))
    shards = []
    for rank in range(ranks):
        be = mg.get_backend("numpy", "float64", seed=3)
        with be.sharded(rank, ranks):
            shards.append((be.standard_normal((rows, width)), be.uniform((rows, 1))))
        assert be.rng.bit_generator.state == whole.rng.bit_generator.state  # generators in step
        assert be.shard is None
    np.testing.assert_array_equal(np.concatenate([normal for normal, _ in shards]), expected_normal)
    np.testing.assert_array_equal(np.concatenate([uniform for _, uniform in shards]), expected_uniform)


def test_rows_of_splits_the_global_batch_evenly_or_says_why_not():
    batch = np.arange(12).reshape(6, 2)
    np.testing.assert_array_equal(np.concatenate([rows_of(batch, rank, 3) for rank in range(3)]), batch)
    with pytest.raises(ValueError, match="6 examples cannot be split evenly over 4 processes"):
        rows_of(batch, 0, 4)


def test_the_optimizer_hands_its_gradient_to_the_hook_before_updating():
    be = mg.get_backend("numpy", "float64", seed=0)
    model = mg.Sequential([mg.Dense(2, 1)], backend=be)
    optimizer = mg.SGD(model, lr=1.0)
    model.grads[...] = 1.0
    before = model.params.copy()
    optimizer.gradient_hook = lambda grads: grads.__imul__(0.5)  # what an average over 2 ranks does
    optimizer.step()
    np.testing.assert_array_equal(model.params, before - 0.5)


def test_launcher_variables_give_size_and_rank(monkeypatch):
    for variable in distributed.SIZE_VARIABLES + distributed.RANK_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert distributed.launched_processes() == 1 and distributed.launched_rank() == 0
    assert distributed.world() is None
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    assert distributed.launched_processes() == 4 and distributed.launched_rank() == 3


def test_several_processes_without_mpi4py_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("OMPI_MCA_mpi_yield_when_idle", "1")  # world() sets it: restored afterwards
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    monkeypatch.setattr(distributed, "_WORLD", [])
    with pytest.raises(DistributedError, match=r"one of 2 .*mpi4py is not installed.*minigan\[mpi\]"):
        distributed.world()
    assert cli.main(["train", "--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mpi4py is not installed" in err and "Traceback" not in err


def test_only_rank_0_prints_errors(monkeypatch, capsys):
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    assert cli.main(["train", "--steps", "0"]) == 2
    assert capsys.readouterr().err == ""


class LocalRanks:
    def __init__(self, local_size):
        self.local_size = local_size


@pytest.mark.parametrize("affinity, cpus, local_size, requested, expected", [
    (4, 4, 2, None, 2),   # unbound: the machine's cores shared by its ranks
    (4, 4, 2, 1, 1),      # never more than asked for
    (2, 2, 4, None, 1),   # at least one
    (1, 4, 2, 8, 1),      # bound by the launcher to one core
])
def test_blas_threads_per_rank(monkeypatch, affinity, cpus, local_size, requested, expected):
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: cpus)
    assert distributed.blas_threads_per_rank(LocalRanks(local_size), requested) == expected


def test_launch_builds_the_mpirun_command_and_refuses_nonsense(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, path=None: "/opt/bin/mpirun")
    command = mpirun_command(2, ["train", "--steps", "5"], "--oversubscribe --mca btl self,tcp")
    assert command == ["/opt/bin/mpirun", "-n", "2", "--oversubscribe", "--mca", "btl", "self,tcp",
                       sys.executable, "-m", "minigan", "train", "--steps", "5"]
    with pytest.raises(ValueError, match="launch runs `train`"):
        mpirun_command(2, ["eval", "--checkpoint", "x"])
    monkeypatch.setattr("shutil.which", lambda name, path=None: None)
    with pytest.raises(DistributedError, match="mpirun, which is not on the PATH"):
        mpirun_command(2, ["train"])


def test_launch_without_mpirun_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr("shutil.which", lambda name, path=None: None)
    assert cli.main(["launch", "-n", "2", "train", "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minigan: error: launch needs mpirun") and err.count("\n") == 1


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGUSR1])
def test_the_loop_defers_the_launcher_s_stop_signals(number):
    with deferred_interrupt((signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)) as stop:
        signal.raise_signal(number)
        assert stop[0]
    assert signal.getsignal(number) == signal.SIG_DFL


class FakeNccl:
    """What the device all-reduce uses of `cupy.cuda.nccl`, recording the calls."""

    available = True
    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = "f32", "f64", "sum"
    calls = []

    @staticmethod
    def get_unique_id():
        return tuple(range(128))

    class NcclCommunicator:
        def __init__(self, size, unique_id, rank):
            FakeNccl.calls.append(("init", size, unique_id, rank))

        def allReduce(self, send, receive, count, dtype, op, stream):
            FakeNccl.calls.append(("allReduce", send, receive, count, dtype, op, stream))


class FakeDeviceArray:
    def __init__(self, count, dtype):
        self.size, self.dtype = count, np.dtype(dtype)
        self.data = type("Pointer", (), {"ptr": 4096})()


def fake_cupy(nccl):
    stream = type("Stream", (), {"ptr": 7})()
    cuda = type("cuda", (), {"nccl": nccl, "get_current_stream": staticmethod(lambda: stream)})
    return type("cupy", (), {"cuda": cuda})


class FakeMpiComm:
    def __init__(self, rank):
        self.rank = rank

    def Bcast(self, array, root):  # rank 0's id arrives on every rank
        array[...] = np.arange(128)


@pytest.mark.parametrize("rank", [0, 1])
def test_device_buffers_are_summed_in_place_over_nccl_bootstrapped_by_one_broadcast(monkeypatch, rank):
    monkeypatch.setattr(distributed, "import_cupy", lambda: fake_cupy(FakeNccl))
    FakeNccl.calls = []
    comm = distributed.Communicator.__new__(distributed.Communicator)
    comm.comm, comm.rank, comm.size, comm._nccl, comm.allreduce_seconds = FakeMpiComm(rank), rank, 2, None, 0.0
    for dtype in (np.float32, np.float64):
        comm.allreduce_sum_(FakeDeviceArray(10, dtype))
    assert FakeNccl.calls == [("init", 2, tuple(range(128)), rank),
                              ("allReduce", 4096, 4096, 10, "f32", "sum", 7),
                              ("allReduce", 4096, 4096, 10, "f64", "sum", 7)]


def test_device_buffers_without_nccl_are_one_clear_error(monkeypatch):
    monkeypatch.setattr(distributed, "import_cupy", lambda: fake_cupy(type("nccl", (), {"available": False})))
    comm = distributed.Communicator.__new__(distributed.Communicator)
    comm._nccl, comm.allreduce_seconds = None, 0.0
    with pytest.raises(DistributedError, match="needs NCCL.*pip install nvidia-nccl-cu12"):
        comm.allreduce_sum_(FakeDeviceArray(3, np.float32))
