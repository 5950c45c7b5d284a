"""Data parallelism under a real `mpirun` (Open MPI over loopback TCP): K=2 equals K=1
from the command line and through the Python API (float64, relative difference <=
1e-10, ranks bitwise identical), BatchNorm with sync_bn, resuming with another K,
processes that disagree, and faults: a rank that raises or is killed ends the job,
non-zero, never a hang; Ctrl-C on `minigan launch` saves the current step.

Every launch has a timeout; on expiry the test interrupts the mpirun it started (which
terminates its ranks) and fails."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minigan.distributed import find_mpirun
from minigan.run.config import RunConfig
from minigan.run.loop import train

from mpi_worker import batches, batchnorm_gan
from test_distributed import assert_close

MPIRUN = find_mpirun()
pytestmark = pytest.mark.skipif(MPIRUN is None or importlib.util.find_spec("mpi4py") is None,
                                reason="needs mpi4py and Open MPI's mpirun: pip install 'minigan[mpi]'")
LOOPBACK = ["--oversubscribe", "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo"]
ENV = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
WORKER = str(Path(__file__).with_name("mpi_worker.py"))
RING8 = ["--data", "ring8", "--dtype", "float64", "--no-progress", "--eval-samples", "100"]


def start(command, **options):
    return subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, **options)


def finish(process, timeout=120):
    """(status, stdout, stderr) of a started mpirun; on timeout, interrupts it and fails."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # mpirun then terminates the ranks it started
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        pytest.fail(f"mpirun did not finish within {timeout} s")
    return process.returncode, out, err


def mpirun(processes, *args, timeout=120):
    return finish(start([MPIRUN, "-n", str(processes), *LOOPBACK, sys.executable, *args]), timeout)


def minigan_train(processes, *flags):
    status, out, err = mpirun(processes, "-m", "minigan", "train", *flags)
    assert status == 0, err
    return out


def arrays(path):
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files if name != "config"}


def single_process_run(tmp_path, name, steps=50):
    train(RunConfig(data="ring8", steps=steps, dtype="float64", out=str(tmp_path / name), progress=False,
                    eval_samples=100))
    return tmp_path / name


def test_two_processes_equal_one_from_the_command_line(tmp_path):
    one = single_process_run(tmp_path, "one")
    out = minigan_train(2, *RING8, "--steps", "50", "--out", str(tmp_path / "two"))
    assert out.count("wrote ") == 1  # rank 0 alone reports
    assert_close(arrays(tmp_path / "two" / "checkpoint.npz"), arrays(one / "checkpoint.npz"))
    history_one = np.loadtxt(one / "history.csv", delimiter=",", skiprows=1)
    history_two = np.loadtxt(tmp_path / "two" / "history.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(history_two, history_one, rtol=1e-10)


def test_two_processes_through_the_api_hold_bitwise_identical_parameters(tmp_path):
    status, _, err = mpirun(2, WORKER, "api", str(tmp_path))
    assert status == 0, err
    first, second = arrays(tmp_path / "rank0.npz"), arrays(tmp_path / "rank1.npz")
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert_close(first, arrays(single_process_run(tmp_path, "one") / "checkpoint.npz"))


def test_batchnorm_with_sync_bn_on_two_processes_equals_one(tmp_path):
    status, _, err = mpirun(2, WORKER, "batchnorm", str(tmp_path))
    assert status == 0, err
    model = batchnorm_gan(seed=0)
    for batch in batches():
        model.train_step(batch)
    first, second = arrays(tmp_path / "rank0.npz"), arrays(tmp_path / "rank1.npz")
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert_close(first, model.state_dict())


@pytest.mark.parametrize("first_k, second_k", [(2, 1), (1, 2)])
def test_a_run_resumes_with_another_number_of_processes(tmp_path, first_k, second_k):
    # digits: no learning-rate schedule (so 10 + 10 steps is 20 steps) and two D steps per step
    flags = ["--data", "digits", "--dtype", "float64", "--batch-size", "32", "--no-progress", "--eval-samples", "100"]
    minigan_train(1, *flags, "--steps", "20", "--out", str(tmp_path / "one"))
    run = str(tmp_path / "run")
    minigan_train(first_k, *flags, "--steps", "10", "--out", run)
    status, _, err = mpirun(second_k, "-m", "minigan", "train", "--resume", run, "--steps", "20", "--no-progress")
    assert status == 0, err
    assert_close(arrays(Path(run) / "checkpoint.npz"), arrays(tmp_path / "one" / "checkpoint.npz"))


def test_processes_that_disagree_are_refused_with_one_line(tmp_path):
    common = ["-m", "minigan", "train", *RING8, "--steps", "5", "--out", str(tmp_path / "run")]
    process = start([MPIRUN, *LOOPBACK, "-n", "1", sys.executable, *common, "--lr", "0.0002",
                     ":", "-n", "1", sys.executable, *common, "--lr", "0.001"])
    status, _, err = finish(process)
    assert status != 0
    lines = [line for line in err.splitlines() if line.startswith("minigan:")]
    assert lines == [lines[0]] and "rank 1 has lr=0.001 (rank 0: 0.0002)" in lines[0]


def test_a_rank_that_raises_ends_the_job_naming_the_rank(tmp_path):
    started = time.monotonic()
    status, _, err = mpirun(2, WORKER, "raise", str(tmp_path), timeout=60)
    assert status != 0 and time.monotonic() - started < 60
    assert "minigan: rank 1 of 2: RuntimeError: injected fault" in err


def _rank_pid(started, rank, timeout=30):
    """The pid of rank `rank` among the descendants of the process `started` (found by
    the rank variable in its environment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = subprocess.run(["pgrep", "-f", "minigan train"], capture_output=True, text=True).stdout.split()
        for pid in map(int, listed):
            try:
                environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"OMPI_COMM_WORLD_RANK={rank}".encode() in environment and started.pid in _ancestors(pid):
                return pid
        time.sleep(0.2)
    pytest.fail(f"rank {rank} did not start")


def _ancestors(pid):
    """The pids above `pid`, up to init."""
    found = []
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        found.append(pid)
    return found


def test_a_killed_rank_ends_the_job_non_zero_without_a_hang(tmp_path):
    process = start([MPIRUN, "-n", "2", *LOOPBACK, sys.executable, "-m", "minigan", "train", "--data", "digits",
                     "--steps", "1000000", "--out", str(tmp_path / "run"), "--no-progress"])
    os.kill(_rank_pid(process, 1), signal.SIGKILL)
    started = time.monotonic()
    status, _, err = finish(process, timeout=60)
    assert status != 0 and time.monotonic() - started < 60
    # what mpirun prints is Open MPI's: usually "process rank 1 ... exited on signal 9", but
    # now and then only a PMIx error from the broken connection (docs/scaling.md)
    assert err.strip(), "mpirun ended the job without a word"


def test_ctrl_c_on_the_launcher_stops_every_rank_and_saves_the_current_step(tmp_path):
    run = tmp_path / "run"
    process = start([sys.executable, "-m", "minigan", "launch", "-n", "2", "--mpirun-args", " ".join(LOOPBACK),
                     "train", "--data", "digits", "--steps", "1000000", "--out", str(run), "--no-progress",
                     "--checkpoint-every", "100"])
    deadline = time.monotonic() + 60
    while not (run / "checkpoint.npz").exists():  # the loop runs: its stop handlers are in place
        if time.monotonic() > deadline or process.poll() is not None:
            finish(process, timeout=15)
            pytest.fail("the run wrote no checkpoint within 60 s")
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    status, _, err = finish(process, timeout=60)
    assert status == 130, err
    saved = json.loads(str(np.load(run / "checkpoint.npz")["config"]))["steps"]
    assert saved > 0 and f"interrupted at step {saved}; checkpoint saved" in err


def test_the_scaling_benchmark_prints_one_row_per_configuration(tmp_path):
    result = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "scaling.py"),
                             "--presets", "ring8", "--batch-sizes", "16", "--warmup", "0", "--steps", "2",
                             "--blocks", "1", "--rounds", "1", "--threads", "2", "--busy-polling", "--sync-bn",
                             "--json", str(tmp_path / "scaling.json")],
                            capture_output=True, text=True, env=ENV, timeout=180)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "scaling.json").read_text())["rows"]
    assert [(row["processes"], row["threads_per_process"], row["waiting"], row["sync_bn"]) for row in rows] == [
        (1, 2, "yield", False), (1, 1, "yield", False), (2, 1, "yield", False), (2, 1, "yield", True),
        (2, 1, "busy polling", False)]
    assert rows[0]["speedup"] == 1.0 and rows[0]["allreduce_share"] == 0.0
    assert all(row["ms_per_step"] > 0 and 0 < row["allreduce_share"] < 1 for row in rows[2:])
    assert result.stdout.count("| ring8 | 16 |") == 5


def test_the_dcgan_step_benchmark_times_minigan_on_two_processes_in_every_round(tmp_path):
    """`dcgan_step.py --processes 2`: a third side, data parallel under mpirun, takes its turn
    in each round (each side goes first once in two rounds) and gets its own table."""
    result = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "dcgan_step.py"),
                             "--batch-sizes", "4", "--rounds", "2", "--repeats", "1", "--threads", "2",
                             "--processes", "2", "--no-layers", "--no-torch", "--json", str(tmp_path / "d.json")],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr
    (step,) = json.loads((tmp_path / "d.json").read_text())["steps"]
    low, high = step["minigan_parallel_spread"]
    assert 0 < low <= step["minigan_parallel_ms"] <= high
    assert step["minigan_parallel_first_second"][0] is not None and step["minigan_parallel_first_second"][1] is not None
    assert step["parallel_ratio"] is None and step["torch_ms"] is None  # no PyTorch side
    assert "## minigan data parallel on 2 processes against PyTorch on 2 threads" in result.stdout
    assert f"| 4 | {step['minigan_parallel_ms']:.2f} ({low:.2f}-{high:.2f}) | n/a | n/a |" in result.stdout


def test_the_dcgan_step_benchmark_refuses_a_batch_the_processes_cannot_share():
    result = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "dcgan_step.py"),
                             "--batch-sizes", "64", "5", "--processes", "2"], capture_output=True, text=True,
                            env=ENV, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "every batch size must be divisible by --processes 2, got [5]")
