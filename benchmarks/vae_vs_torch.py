"""VAE against PyTorch: the `vae` preset trained in minigan and in PyTorch (float32, CPU) from
the same initial weights, on the same batches with the same noise; test ELBO and speed.

Both sides: encoder 784-400-(20, 20), decoder 20-400-784 logits, ReLU, Bernoulli likelihood,
Adam 1e-3 (0.9, 0.999) eps 1e-8, batch 128, loss the batch mean of [BCE-with-logits summed
over pixels + KL] (pytorch/examples' VAE, per example). nn.Linear gets copies of minigan's
initial parameters (weight = W.T); step s feeds both RealData batch s and the same eps
(numpy.random.default_rng([seed, 3, s])). `--epochs` epochs of ceil(60000 / 128) = 469 steps
(10: the preset's 4690), the sides alternating epoch by epoch. Reported for each side:

* test ELBO: mean over the 10,000 test images of log p(x|z) - KL (nats per example; minigan's
  `VAE.elbo`, one shared eps per image), and the relative difference (target: within 1%);
* training wall time (batch and eps fetching included: the same work on both sides), samples/s;
* timed samples/s: `--rounds` rounds, the sides taking turns going first, each block a 0.3 s
  pause, one untimed step and `--block-steps` timed steps on prefetched batches
  (`minigan.bench.timing`); the median over rounds (min-max spread; medians going first /
  second) and the ratio minigan/torch (target >= 1.0).

One process, `--threads` BLAS threads per side (threadpoolctl for NumPy, torch.set_num_threads).

    python benchmarks/vae_vs_torch.py                       # 10 epochs of Fashion-MNIST
    python benchmarks/vae_vs_torch.py --epochs 1 --rounds 3 --json /tmp/vae.json
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import math
import sys
import time
from typing import Any

import numpy as np

from minigan.backend import get_backend
from minigan.bench.machine import OtherLoad, describe, format_machine, torch_info
from minigan.bench.timing import Summary, alternate, round_order, timed_block
from minigan.data import DEFAULT_IDX_DIR
from minigan.files import atomic_write_json
from minigan.model import Sequential
from minigan.run.presets import PRESETS, build_vae
from minigan.run.realdata import RealData
from minigan.run.threads import blas_threads
from minigan.vae import VAE

PRESET = PRESETS["vae"]
SIDES = ("minigan", "torch")


def noise(seed: int, step: int, rows: int, latent_dim: int = PRESET.latent_dim) -> np.ndarray:
    """The eps ~ N(0, I) of training step `step` (rows, latent_dim) float32, a pure function of (seed, step)."""
    return np.random.default_rng([seed, 3, step]).standard_normal((rows, latent_dim), dtype=np.float32)


def elbo_noise(seed: int, rows: int, latent_dim: int = PRESET.latent_dim) -> np.ndarray:
    """The eps of the test-set ELBO, one row per test image, shared by both sides."""
    return np.random.default_rng([seed, 4]).standard_normal((rows, latent_dim), dtype=np.float32)


def torch_twin(model: Sequential, torch: Any) -> Any:
    """An nn.Sequential of `model`'s Dense and ReLU layers with its parameters copied (weight = W.T)."""
    nn = torch.nn
    makers = {"Dense": lambda layer: nn.Linear(layer.in_features, layer.out_features), "ReLU": lambda _: nn.ReLU()}
    twin = nn.Sequential(*(makers[type(layer).__name__](layer) for layer in model.layers))
    with torch.no_grad():
        for (_, value, _), param in zip(model.named_parameters(), twin.parameters(), strict=True):
            param.copy_(torch.from_numpy(model.backend.to_numpy(value).T.copy()))
    return twin


class TorchVAE:
    """The same VAE in PyTorch (float32, CPU): twins of a minigan VAE's networks and one Adam
    over all their parameters (per-element Adam: the same as minigan's one per network)."""

    def __init__(self, vae: VAE, torch: Any):
        self.torch, self.latent_dim = torch, vae.latent_dim
        self.encoder, self.decoder = torch_twin(vae.encoder, torch), torch_twin(vae.decoder, torch)
        self.optimizer = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()],
                                          lr=PRESET.lr, betas=PRESET.betas, eps=1e-8)

    def _recon_kl(self, x: Any, eps: Any) -> tuple[Any, Any]:
        """-log p(x|z) and KL(q(z|x) || p(z)) per example, (N,) each, z = mu + exp(logvar / 2) eps."""
        torch = self.torch
        h = self.encoder(x)                                                  # (N, 2 L)
        mu, logvar = h[:, :self.latent_dim], h[:, self.latent_dim:]          # (N, L) each
        logits = self.decoder(mu + torch.exp(logvar / 2) * eps)              # (N, 784)
        recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        return recon, kl

    def train_step(self, x: np.ndarray, eps: np.ndarray) -> dict[str, float]:
        """One Adam step on the batch mean of recon + KL; returns {"loss": ...} like VAE.train_step."""
        self.optimizer.zero_grad()
        recon, kl = self._recon_kl(self.torch.from_numpy(x), self.torch.from_numpy(eps))
        loss = (recon + kl).mean()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def elbo(self, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """log p(x|z) - KL per example, float64 (N,), the estimator of minigan's VAE.elbo."""
        with self.torch.no_grad():
            recon, kl = self._recon_kl(self.torch.from_numpy(x), self.torch.from_numpy(eps))
        return -(recon + kl).numpy().astype(np.float64)


def build_sides(seed: int, torch: Any) -> dict[str, Any]:
    """{"minigan": the preset's VAE (float32, initialised from `seed`), "torch": its twin}."""
    vae = build_vae(PRESET, (784,), get_backend("numpy", "float32", seed=seed))
    return {"minigan": vae, "torch": TorchVAE(vae, torch)}


def train(sides: dict[str, Any], data: RealData, steps: int, seed: int, chunk: int) -> dict[str, Any]:
    """`steps` steps on each side, alternating every `chunk` steps (and which side goes first).

    Returns:
        {side: {"seconds": training wall time, "losses": the loss of every step}}.
    """
    runs = {name: {"seconds": 0.0, "losses": []} for name in sides}
    for first in range(0, steps, chunk):
        for name in round_order(SIDES, first // chunk):
            side, run = sides[name], runs[name]
            start = time.perf_counter()
            for step in range(first, min(first + chunk, steps)):
                run["losses"].append(side.train_step(data.batch(step), noise(seed, step, data.batch_size))["loss"])
            run["seconds"] += time.perf_counter() - start
    return runs


def timed_throughput(sides: dict[str, Any], data: RealData, seed: int, rounds: int, block_steps: int,
                     distinct_batches: int = 8) -> dict[str, Summary]:
    """Each side's samples/s over its timed blocks, one per round (module docstring)."""
    batches = [(data.batch(i), noise(seed, i, data.batch_size)) for i in range(distinct_batches)]

    def measure(_: None, name: str) -> float:
        feed = itertools.cycle(batches)
        times_ms = timed_block(lambda: sides[name].train_step(*next(feed)), block_steps)
        return block_steps * data.batch_size / (sum(times_ms) / 1000.0)

    runs = alternate([None], SIDES, rounds, measure)
    return {name: Summary.of_runs(runs[None, name]) for name in SIDES}


def run_benchmark(epochs: float = 10, data_dir: str | None = None, threads: int = 1, seed: int = 0,
                  rounds: int = 5, block_steps: int = 300) -> dict[str, Any]:
    """Trains, evaluates and times both sides; returns the results as plain data."""
    import torch

    torch.set_num_threads(threads)
    others = OtherLoad()
    data = RealData("idx", PRESET.batch_size, seed, data_dir)
    x_test = data.dataset.x_test                                      # (10000, 784) float32 in [0, 1]
    steps_per_epoch = math.ceil(len(data.dataset.x_train) / data.batch_size)
    steps = max(1, round(epochs * steps_per_epoch))
    with blas_threads(threads):
        sides = build_sides(seed, torch)
        runs = train(sides, data, steps, seed, steps_per_epoch)
        eps_test = elbo_noise(seed, len(x_test))
        elbos = {name: float(np.mean(side.elbo(x_test, eps_test))) for name, side in sides.items()}
        rates = timed_throughput(sides, data, seed, rounds, block_steps)  # trains on: after the ELBO
        machine = describe(threads, torch_info(torch), others)
    results: dict[str, Any] = {"steps": steps, "samples": steps * data.batch_size, "test_images": len(x_test),
                               "rounds": rounds, "block_steps": block_steps}
    for name, run in runs.items():
        results[name] = {"test_elbo": elbos[name],
                         "last_epoch_loss": float(np.mean(run["losses"][-steps_per_epoch:])),
                         "train_seconds": run["seconds"], "train_samples_per_s": results["samples"] / run["seconds"],
                         "timed_samples_per_s": rates[name].median, "timed": rates[name].as_dict()}
    ours, theirs = results["minigan"], results["torch"]
    results["elbo_relative_difference"] = abs(ours["test_elbo"] - theirs["test_elbo"]) / abs(theirs["test_elbo"])
    results["train_ratio"] = ours["train_samples_per_s"] / theirs["train_samples_per_s"]
    results["timed_ratio"] = ours["timed_samples_per_s"] / theirs["timed_samples_per_s"]
    results["machine"] = machine
    return results


def format_report(results: dict[str, Any]) -> str:
    """The markdown table, the two targets and the machine notes."""
    ours, theirs, machine = results["minigan"], results["torch"], results["machine"]

    def row(label: str, key: str, form: str, last: str = "") -> str:
        return f"| {label} | {ours[key]:{form}} | {theirs[key]:{form}} | {last} |"

    def timed(side: dict[str, Any]) -> str:
        rate = side["timed"]
        orders = " / ".join("n/a" if value is None else f"{value:,.0f}"
                            for value in (rate["when_first"], rate["when_second"]))
        return f"{rate['median']:,.0f} ({rate['low']:,.0f}-{rate['high']:,.0f}; {orders})"

    elbo_ok, speed_ok = results["elbo_relative_difference"] <= 0.01, results["timed_ratio"] >= 1.0
    return "\n".join([
        f"## VAE preset, float32 CPU: {results['steps']} steps of batch {PRESET.batch_size}, "
        f"{results['test_images']:,} test images\n",
        "| | minigan | torch | minigan vs torch |", "|---|---:|---:|---:|",
        row("test ELBO (nats/example)", "test_elbo", ".2f", f"rel. diff. {results['elbo_relative_difference']:.3%}"),
        row("training loss, last epoch mean", "last_epoch_loss", ".2f"),
        row("training wall time (s)", "train_seconds", ".1f"),
        row("training samples/s", "train_samples_per_s", ",.0f", f"{results['train_ratio']:.2f}x"),
        f"| timed samples/s, median of {results['rounds']} x {results['block_steps']} steps (spread; first / second) "
        f"| {timed(ours)} | {timed(theirs)} | {results['timed_ratio']:.2f}x |\n",
        f"- ELBO within 1%: {'yes' if elbo_ok else 'NO'}; timed throughput minigan/torch >= 1.0: "
        f"{'yes' if speed_ok else 'NO'}",
        *(f"- {line}" for line in format_machine(machine))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=10, help="epochs of 469 steps (fractions allowed)")
    parser.add_argument("--data-dir", help=f"Fashion-MNIST (or MNIST) IDX directory (default {DEFAULT_IDX_DIR})")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (NumPy) and torch threads")
    parser.add_argument("--seed", type=int, default=0, help="initial weights, batch order and eps")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds alternating which side goes first")
    parser.add_argument("--block-steps", type=int, default=300, help="timed steps per side and round")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if args.epochs <= 0 or min(args.threads, args.rounds, args.block_steps) < 1:
        parser.error("--epochs must be > 0, and --threads, --rounds and --block-steps >= 1")
    if importlib.util.find_spec("torch") is None:
        parser.error("this benchmark needs PyTorch (pip install torch, the CPU build)")
    results = run_benchmark(args.epochs, args.data_dir, args.threads, args.seed, args.rounds, args.block_steps)
    print(format_report(results))
    if args.json:
        atomic_write_json(args.json, {"arguments": vars(args), **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
