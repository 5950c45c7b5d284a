"""The PyTorch side of the DCGAN benchmarks: the `dcgan-paper` preset's networks and step written
in idiomatic PyTorch (`TorchDCGAN`), and the child process that times them for
benchmarks/dcgan_step.py (`python -m minigan.bench.dcgan_torch --torch-worker`, one JSON
request and reply a line; `TorchWorker` is its client). benchmarks/dcgan_torch_quality.py
trains `TorchDCGAN` itself. What is measured is described in `minigan.bench.dcgan`; only
these benchmarks import torch, never minigan.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from .dcgan import IMAGE, forward_backward_ms
from .machine import torch_info
from .timing import PAUSE_S, timed_block


class TorchDCGAN:
    """The same networks in idiomatic PyTorch (NCHW) for `image`s (H, W, C) with sides divisible
    by 4, pytorch/examples' dcgan step: Adam(`lr`, betas (0.5, 0.999)), torch seeded with `seed`.
    With `spectral_norm`, D's convolutions and dense layer are spectrally normalised (Miyato et
    al. 2018: torch's parametrisation, one power iteration per forward pass in training); with
    `r1_gamma` > 0, D's step adds the R1 penalty (gamma / 2) mean ||grad_x D(x)||^2 on the real
    batch (Mescheder et al. 2018). Either way D has no BatchNorm, whose batch statistics would
    couple the examples. With `mlp_head` widths, D has a second head beside its convolutions, as
    minigan's `discriminator_mlp_head` builds it (Flatten -> [Linear -> LeakyReLU 0.2] per width
    -> Linear -> 1), and each loss is the mean over both heads' logits (N, 2). Built only in the
    worker process and by benchmarks/dcgan_torch_quality.py."""

    def __init__(self, torch: Any, batch: int, lr: float = 2e-4, seed: int = 0,
                 image: tuple[int, int, int] = IMAGE, spectral_norm: bool = False, r1_gamma: float = 0.0,
                 mlp_head: tuple[int, ...] = ()):
        nn = self.nn = torch.nn
        self.torch, self.batch, self.r1_gamma, self.heads = torch, batch, r1_gamma, 2 if mlp_head else 1
        batch_norm = not (spectral_norm or r1_gamma)
        torch.manual_seed(seed)
        height, width, channels = image[0] // 4, image[1] // 4, image[2]  # G's first stage
        self.G = nn.Sequential(
            nn.Linear(100, 128 * height * width), nn.Unflatten(1, (128, height, width)), nn.BatchNorm2d(128),
            nn.ReLU(True), nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.ConvTranspose2d(64, channels, 4, 2, 1), nn.Tanh())
        self.D = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, 128, 4, 2, 1), *([nn.BatchNorm2d(128)] if batch_norm else []),
            nn.LeakyReLU(0.2, inplace=True), nn.Flatten(), nn.Linear(128 * height * width, 1))
        if mlp_head:
            widths = [image[0] * image[1] * channels, *mlp_head, 1]
            perceptron = [nn.Flatten()]
            for index, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
                perceptron.append(nn.Linear(n_in, n_out))
                if index < len(widths) - 2:
                    perceptron.append(nn.LeakyReLU(0.2))
            self.D = _heads(torch, self.D, nn.Sequential(*perceptron))
        for model in (self.G, self.D):
            model.apply(self._dcgan_init)
        if spectral_norm:  # after the initialisation, which writes the weights themselves
            for index, module in enumerate(self.D):
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    self.D[index] = nn.utils.parametrizations.spectral_norm(module)
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.5, 0.999))
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(0.5, 0.999))
        self.criterion = nn.BCEWithLogitsLoss()
        self.real = torch.rand(batch, channels, *image[:2]) * 2 - 1  # (N, C, H, W)

    def _dcgan_init(self, module: Any) -> None:
        """pytorch/examples' weights_init: N(0, 0.02) weights, BatchNorm gamma N(1, 0.02)."""
        init = self.nn.init
        if isinstance(module, (self.nn.Conv2d, self.nn.ConvTranspose2d, self.nn.Linear)):
            init.normal_(module.weight, 0.0, 0.02)
            init.zeros_(module.bias)
        elif isinstance(module, self.nn.BatchNorm2d):
            init.normal_(module.weight, 1.0, 0.02)
            init.zeros_(module.bias)

    def train_step(self, real: Any = None) -> tuple[float, float]:
        """pytorch/examples' dcgan step (with a logit D and BCEWithLogitsLoss) on `real`
        (batch, C, H, W), by default the fixed random `self.real`; (d_loss, g_loss)."""
        torch, D = self.torch, self.D
        real = self.real if real is None else real
        ones, zeros = torch.ones(self.batch, self.heads), torch.zeros(self.batch, self.heads)
        fake = self.G(torch.randn(self.batch, 100))
        D.zero_grad()
        if self.r1_gamma:
            real = real.detach().requires_grad_(True)
        logits_real = D(real)
        loss_real = self.criterion(logits_real, ones)
        penalty = self.r1_penalty(real, logits_real) if self.r1_gamma else 0.0
        (loss_real + penalty).backward()
        loss_fake = self.criterion(D(fake.detach()), zeros)
        loss_fake.backward()
        self.d_opt.step()
        self.G.zero_grad()
        g_loss = self.criterion(D(fake), ones)
        g_loss.backward()
        self.g_opt.step()
        return (loss_real + loss_fake).item(), g_loss.item()

    def r1_penalty(self, real: Any, logits_real: Any) -> Any:
        """(r1_gamma / 2) mean_i ||grad_x D(x_i)||^2 of D's `logits_real` on `real` (which
        requires grad), as a tensor that can be differentiated again."""
        (gradient,) = self.torch.autograd.grad(logits_real.sum(), real, create_graph=True)  # (N, C, H, W)
        return self.r1_gamma / 2 * gradient.pow(2).flatten(1).sum(1).mean()

    def step_ms(self, repeats: int) -> float:
        """One fair timed block (a pause, one untimed step): the median ms of `repeats` steps."""
        return statistics.median(timed_block(self.train_step, repeats))

    def layer_ms(self, repeats: int) -> list[dict[str, Any]]:
        """Forward and backward ms of every module of G, then of D (training mode); inputs
        require grad, and are cloned untimed so that in-place activations may run."""
        torch = self.torch
        time.sleep(PAUSE_S)
        rows = []
        for network, model, x in (("G", self.G, torch.randn(self.batch, 100)), ("D", self.D, self.real)):
            for index, module in enumerate(model):
                with torch.no_grad():
                    y = module(x.clone())
                leaf = torch.randn(x.shape, requires_grad=True)
                dy = torch.randn(y.shape)

                def backward(out: Any, module: Any = module, leaf: Any = leaf, dy: Any = dy) -> None:
                    module.zero_grad()
                    leaf.grad = None
                    torch.autograd.backward(out, dy)

                forward_ms, backward_ms = forward_backward_ms(leaf.clone, module, backward, repeats)
                rows.append({"network": network, "layer": f"{index} {type(module).__name__}",
                             "shape_in": list(x.shape[1:]), "shape_out": list(y.shape[1:]),
                             "torch_forward_ms": forward_ms, "torch_backward_ms": backward_ms})
                x = y
        return rows


def _heads(torch: Any, *heads: Any) -> Any:
    """A module running every head on the same input, logits joined along dim 1 (minigan's
    `Branches`)."""
    class Heads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = torch.nn.ModuleList(heads)

        def forward(self, x: Any) -> Any:
            return torch.cat([head(x) for head in self.heads], dim=1)  # (N, heads)

    return Heads()


def worker_main(threads: int) -> None:
    """The PyTorch worker: a hello line, then one reply per JSON request on stdin
    ({"op": "step" | "layers", "batch": B, "repeats": r})."""
    import torch

    torch.set_num_threads(threads)
    print(json.dumps(torch_info(torch)), flush=True)
    models: dict[int, TorchDCGAN] = {}
    for line in sys.stdin:
        request = json.loads(line)
        batch = request["batch"]
        if batch not in models:
            models[batch] = TorchDCGAN(torch, batch)
        model = models[batch]
        if request["op"] == "step":
            reply: dict[str, Any] = {"ms": model.step_ms(request["repeats"])}
        else:
            reply = {"layers": model.layer_ms(request["repeats"])}
        print(json.dumps(reply), flush=True)


class TorchWorker:
    """The client side of the worker process: starts it with `threads` torch threads and
    reads its hello (version, threads, BLAS lines) into `hello`."""

    def __init__(self, threads: int):
        self.log = tempfile.TemporaryFile(mode="w+")  # the child's stderr, read if it dies
        self.process = subprocess.Popen(
            [sys.executable, "-m", "minigan.bench.dcgan_torch", "--torch-worker", "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.hello = self._reply()

    def _reply(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError(f"the PyTorch worker died: {self.log.read()[-1000:]}")
        return json.loads(line)

    def ask(self, op: str, batch: int, repeats: int) -> dict[str, Any]:
        """One request: op "step" ({"ms": ...}) or "layers" ({"layers": rows}) at `batch`."""
        self.process.stdin.write(json.dumps({"op": op, "batch": batch, "repeats": repeats}) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.log.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The PyTorch worker of the DCGAN step benchmark "
                                                 "(the benchmark itself: benchmarks/dcgan_step.py).")
    parser.add_argument("--torch-worker", action="store_true", help="answer JSON requests on stdin")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    arguments = parser.parse_args()
    if not arguments.torch_worker:
        parser.error("this entry point is the PyTorch worker (--torch-worker); run benchmarks/dcgan_step.py")
    worker_main(arguments.threads)
