"""The `dcgan-paper` preset's recipe trained in PyTorch and scored by minigan's own metric: the
PyTorch twin of benchmarks/dcgan_recipes.py's default row, so that the two can be compared.

The networks are `minigan.bench.dcgan_torch.TorchDCGAN` (G z(100) -> Dense -> (128, H/4, W/4) ->
BatchNorm ReLU -> ConvT 128->64 -> BatchNorm ReLU -> ConvT 64->1 -> Tanh; D Conv 1->64 ->
LeakyReLU 0.2 -> Conv 64->128 -> BatchNorm LeakyReLU 0.2 -> Dense -> 1 logit; k4 s2 p1,
weights N(0, 0.02), BatchNorm gamma N(1, 0.02)), trained with pytorch/examples' dcgan step
(non-saturating loss, D on the real and the fake batch in two passes, Adam with betas
(0.5, 0.999)) at the preset's learning rate, on the same real batches minigan trains on
(`RealData(--data, 64, --seed)`, pixels in [-1, 1]); torch is seeded with `--seed`. At every
evaluation it prints one table row with the classifier Fréchet distance of `--samples`
samples from the same fixed evaluation noise, scored by the same classifier as
dcgan_recipes.py (`minigan.bench.dcgan_quality.Scorer`): with G in evaluation mode (running
BatchNorm statistics) and the class those samples get worst, then in training mode; last,
the evaluation-mode distances joined as docs/quality.md quotes them. If both plateau at the
same distance, the recipe, not minigan's code, is what limits the quality.

Two variants minigan does not have yet, each with no BatchNorm in D: `--spectral-norm`
spectrally normalises D's convolutions and dense layer (Miyato et al. 2018), and
`--r1-gamma G` adds the R1 penalty (G / 2) mean ||grad_x D(x)||^2 on the real batch to D's
loss (Mescheder et al. 2018). `--discriminator-mlp-head 512 256` gives D a second head, an MLP
beside its convolutions, as the preset option of the same name does in minigan.

    python benchmarks/dcgan_torch_quality.py --steps 8000 --eval-every 2000 --json torch.json
    python benchmarks/dcgan_recipes.py --steps 8000 --eval-every 2000 --json minigan.json
    python benchmarks/dcgan_torch_quality.py --spectral-norm --lr 2e-4
    python benchmarks/dcgan_torch_quality.py --r1-gamma 1
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from typing import Any

import numpy as np

from minigan.bench.dcgan_torch import TorchDCGAN
from minigan.bench.dcgan_quality import (TABLE_HEAD, TABLE_RULE, Scorer, add_run_arguments, check_run_arguments,
                                         eval_mode_summary, table_row)
from minigan.files import atomic_write_json
from minigan.run.arguments import positive
from minigan.run.presets import PRESETS
from minigan.run.realdata import RealData
from minigan.run.threads import blas_threads

PRESET = PRESETS["dcgan-paper"]  # the recipe; TorchDCGAN builds its networks (tests check they match)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--threads", type=positive, default=1, help="torch threads (and NumPy's BLAS threads)")
    parser.add_argument("--spectral-norm", action="store_true",
                        help="D spectrally normalised (Miyato et al. 2018) and without BatchNorm")
    parser.add_argument("--r1-gamma", type=float, default=0.0,
                        help="with gamma > 0: the R1 penalty on real data (Mescheder et al. 2018), D without BatchNorm")
    args = parser.parse_args(argv)
    check_run_arguments(parser, args)
    if not args.r1_gamma >= 0:
        parser.error(f"--r1-gamma must be >= 0, got {args.r1_gamma}")
    return args


def discriminator_description(args: argparse.Namespace) -> str:
    """How D is regularised, as the header line says it."""
    parts = (["spectrally normalised"] if args.spectral_norm else []) + \
        ([f"R1 penalty gamma {args.r1_gamma:g}"] if args.r1_gamma else [])
    head = f", MLP head {tuple(args.discriminator_mlp_head)}" if args.discriminator_mlp_head else ""
    return (", ".join(parts) + ", no BatchNorm" if parts else "with BatchNorm") + head


def torch_samples(model: TorchDCGAN, noise: np.ndarray, training_mode: bool) -> np.ndarray:
    """G's images (n, H, W, C) of `noise` (n, latent) in training or evaluation mode, as
    NumPy; G is left in training mode."""
    torch = model.torch
    model.G.train(training_mode)
    try:
        with torch.no_grad():
            images = model.G(torch.from_numpy(noise.astype(np.float32)))  # (n, C, H, W)
    finally:
        model.G.train(True)
    return images.permute(0, 2, 3, 1).numpy()


def run(args: argparse.Namespace, torch: Any) -> list[dict[str, Any]]:
    """Trains the twin and returns one row per evaluation."""
    data = RealData(args.data, PRESET.batch_size, args.seed, image_layout=True, symmetric=True)
    model = TorchDCGAN(torch, PRESET.batch_size, lr=args.lr, seed=args.seed, image=data.shape,
                       spectral_norm=args.spectral_norm, r1_gamma=args.r1_gamma,
                       mlp_head=tuple(args.discriminator_mlp_head))
    score = Scorer(data, PRESET.latent_dim, args.samples, args.seed)
    rows, trained_s = [], 0.0
    for step in range(args.steps):
        start = time.perf_counter()
        real = torch.from_numpy(data.batch(step)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
        model.train_step(real)
        trained_s += time.perf_counter() - start
        if (step + 1) % args.eval_every == 0:
            row = score.row(step + 1, trained_s, partial(torch_samples, model))
            rows.append(row)
            print(table_row(row), flush=True)
            if args.json:
                atomic_write_json(args.json, {"args": vars(args), "rows": rows})
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("this benchmark needs PyTorch: pip install torch==2.13.0")
    torch.set_num_threads(args.threads)
    print(f"### dcgan-paper recipe in PyTorch on {args.data}: lr D and G {args.lr}, betas {PRESET.betas}, "
          f"loss {PRESET.loss}, G {PRESET.generator_hidden}, D {PRESET.discriminator_hidden}, "
          f"batch {PRESET.batch_size}, D {discriminator_description(args)}, "
          f"seed {args.seed}, {args.threads} torch thread(s)\n")
    print(TABLE_HEAD)
    print(TABLE_RULE)
    with blas_threads(args.threads):
        rows = run(args, torch)
    print("\n" + eval_mode_summary(rows))


if __name__ == "__main__":
    main()
