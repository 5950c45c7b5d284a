"""The PyTorch reference of the benchmark: the same networks and the same step semantics.

Run only when the benchmark is asked for the reference (`minigan bench --torch`), and
then as a child process (`python -m minigan.bench.torch_reference --threads N`, N being
NumPy's BLAS threads) that answers one JSON request per line, so that PyTorch's threads
never compete with NumPy's BLAS threads while minigan is being timed; minigan itself never
needs PyTorch. Each request is one fair timed block (`minigan.bench.step.step_block_ms`:
a pause, untimed steps, the timed steps), then the products alone. The step follows
DESIGN.md: one noise batch, D updated on real + fake (fake detached), then G updated
through the *updated* D, with D's parameters frozen so no D parameter gradients are
computed in the G step; the same four statistics are read back each step, as
`GAN.train_step` does.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from .machine import torch_info
from .step import FEATURES, LATENT, roofline_ms, step_block_ms


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("the PyTorch reference needs torch: pip install torch==2.13.0 "
                          "(the CPU build)") from None
    return torch


def available_devices() -> tuple[list[str], list[str]]:
    """Devices PyTorch can run on here ("cpu", and "cuda" with a GPU), plus notes on the rest."""
    try:
        torch = _torch()
    except ImportError as error:
        return [], [f"torch: skipped ({error})"]
    if torch.cuda.is_available():
        return ["cpu", "cuda"], []
    return ["cpu"], ["torch cuda: skipped (no CUDA device visible to PyTorch)"]


class TorchGAN:
    """G 100 -> H ReLU -> 784 sigmoid, D 784 -> H ReLU -> 1, Adam(2e-4, (0.5, 0.999))."""

    def __init__(self, hidden: int, device: str):
        torch = _torch()
        nn = torch.nn
        torch.manual_seed(0)
        self.torch, self.device = torch, device
        self.G = nn.Sequential(nn.Linear(LATENT, hidden), nn.ReLU(), nn.Linear(hidden, FEATURES),
                               nn.Sigmoid()).to(device)
        self.D = nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 1)).to(device)
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.bce = nn.BCEWithLogitsLoss()

    def train_step(self, real: Any) -> dict[str, float]:
        torch, D = self.torch, self.D
        z = torch.randn(real.shape[0], LATENT, device=self.device)
        fake = self.G(z)
        logits_real, logits_fake = D(real), D(fake.detach())
        d_loss = (self.bce(logits_real, torch.ones_like(logits_real))
                  + self.bce(logits_fake, torch.zeros_like(logits_fake)))
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()
        D.requires_grad_(False)
        logits = D(fake)
        g_loss = self.bce(logits, torch.ones_like(logits))
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        D.requires_grad_(True)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(),
                "d_real": torch.sigmoid(logits_real).mean().item(),
                "d_fake": torch.sigmoid(logits_fake).mean().item()}


class _TorchModule:
    """Just enough of an array module for `roofline_ms`: asarray, empty, matmul and multiply."""

    def __init__(self, torch: Any, device: str):
        self.torch, self.device = torch, device

    def asarray(self, array: np.ndarray, dtype: Any) -> Any:
        return self.torch.as_tensor(np.asarray(array, dtype=dtype), device=self.device)

    def empty(self, shape: tuple[int, int], dtype: Any) -> Any:
        return self.torch.empty(shape, dtype=self.torch.float32, device=self.device)

    def matmul(self, a: Any, b: Any, out: Any) -> Any:
        return self.torch.matmul(a, b, out=out)

    def multiply(self, a: Any, b: Any, out: Any) -> Any:
        return self.torch.mul(a, b, out=out)


def bench_torch(gan: TorchGAN, batch: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Times one round of the PyTorch reference step (float32) and its matrix products."""
    torch, device = gan.torch, gan.device
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    real = torch.as_tensor(np.random.default_rng(1).random((batch, FEATURES), dtype=np.float32),
                           device=device)
    step_ms = step_block_ms(lambda: gan.train_step(real), synchronize, repeats, warmup)
    hidden = gan.G[0].out_features
    products_ms = roofline_ms(_TorchModule(torch, device), np.float32, batch, hidden, synchronize,
                              repeats, warmup)
    peak = None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        gan.train_step(real)
        peak = torch.cuda.max_memory_allocated() / 2**20
    return {"ms_per_step": step_ms, "roofline_ms": products_ms, "peak_mb": peak,
            "note": f"torch {torch.__version__}, {torch.get_num_threads()} threads"}


def main(threads: int) -> None:
    """Worker loop: announces the devices (and, with PyTorch, its version, CPU threads and BLAS),
    then answers one JSON request per stdin line."""
    devices, notes = available_devices()
    hello: dict[str, Any] = {"devices": devices, "notes": notes}
    if devices:
        torch = _torch()
        torch.set_num_threads(threads)
        hello["torch"] = torch_info(torch)
    print(json.dumps(hello), flush=True)
    gans: dict[tuple[str, int], TorchGAN] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["device"], request["hidden"])
        if key not in gans:
            gans[key] = TorchGAN(request["hidden"], request["device"])
        reply = bench_torch(gans[key], request["batch"], request["repeats"], request["warmup"])
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The PyTorch reference worker of `minigan bench --torch`.")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (NumPy's BLAS threads)")
    main(parser.parse_args().threads)
