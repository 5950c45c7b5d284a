"""Run by tests/test_distributed_mpi.py under `mpirun`: one rank of a data-parallel job.

    python mpi_worker.py api OUT        train ring8 (float64, 50 steps) through the Python
                                        API; each rank saves its final state to OUT/rank<r>.npz
    python mpi_worker.py batchnorm OUT  a GAN with BatchNorm, DataParallel with sync_bn, 5 steps;
                                        each rank saves its final state to OUT/rank<r>.npz
    python mpi_worker.py raise OUT      the command line, with rank 1 raising at step 5
"""
import sys
from pathlib import Path

import numpy as np

import minigan as mg
from minigan.distributed import DataParallel, world
from minigan.run import cli, loop
from minigan.run.config import RunConfig

def save_rank_state(model, out):
    np.savez(out / f"rank{world().rank}.npz", **model.state_dict())


def batchnorm_gan(seed):
    be = mg.get_backend("numpy", "float64", seed=seed)
    G = mg.Sequential([mg.Dense(3, 8), mg.BatchNorm(8), mg.ReLU(), mg.Dense(8, 2)], backend=be)
    D = mg.Sequential([mg.Dense(2, 8), mg.BatchNorm(8), mg.LeakyReLU(0.2), mg.Dense(8, 1)], backend=be)
    return mg.GAN(G, D)


def batches():
    rng = np.random.default_rng(7)
    return [rng.uniform(-1, 1, (16, 2)) for _ in range(5)]


def main(mode, out):
    if mode == "api":
        fit = loop.fit

        def fit_and_save(model, *args, **kwargs):
            history = fit(model, *args, **kwargs)
            save_rank_state(model, out)
            return history

        loop.fit = fit_and_save
        loop.train(RunConfig(data="ring8", steps=50, dtype="float64", out=str(out / "run"), progress=False,
                             eval_samples=100))
    elif mode == "batchnorm":
        comm = world()
        model = batchnorm_gan(seed=comm.rank)  # rank 0's weights are broadcast
        parallel = DataParallel(model, comm, {"test": "batchnorm"}, sync_bn=True)
        for batch in batches():
            parallel.train_step(batch)
        save_rank_state(model, out)
    elif mode == "raise":
        step = mg.GAN.train_step

        def failing_step(self, *args, **kwargs):
            if world().rank == 1 and self.steps == 5:
                raise RuntimeError("injected fault")
            return step(self, *args, **kwargs)

        mg.GAN.train_step = failing_step
        sys.exit(cli.main(["train", "--steps", "1000", "--out", str(out / "run"), "--no-progress"]))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
