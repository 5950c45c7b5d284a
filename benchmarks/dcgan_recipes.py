"""DCGAN recipe search: trains the `dcgan-paper` preset's networks with other settings and scores
the generator every `--eval-every` steps, the way docs/quality.md ("DCGAN") chose the
preset's learning rate.

One variant per run (seed `--seed`, one BLAS thread): Adam's learning rate for D and G
(`--lr`, or `--lr-d` / `--lr-g` for two time scales), a linear decay to 0 over the run,
the loss, the widths of G and D (and how many convolutions D has), packing, D steps per
G step, label smoothing, the batch size, Adam's betas, D without BatchNorm, an MLP head
beside D's convolutions (`--discriminator-mlp-head`), and moving averages of G's weights
(one per `--ema` decay). At every evaluation it prints one table row: the classifier
Fréchet distance of 2,500 samples from the fixed evaluation noise with G in evaluation
mode (running BatchNorm statistics) and the class those samples get worst
(`class_frechet_distance`), in training mode (the samples' own batch statistics) and, with
`--ema`, of each weight average in both modes (in evaluation mode with statistics of its
own, `recompute_generator_statistics`, as `GAN.sample` draws it); last, the
evaluation-mode distances joined as docs/quality.md quotes them.

    python benchmarks/dcgan_recipes.py --lr 1e-3 --steps 8000 --eval-every 2000
    python benchmarks/dcgan_recipes.py --lr-d 4e-4 --lr-g 1e-4 --ema 0.999
    python benchmarks/dcgan_recipes.py --lr 1e-3 --loss hinge --generator-hidden 256 128
    python benchmarks/dcgan_recipes.py --lr 1e-3 --pack 2 --d-steps 2 --no-discriminator-batch-norm
    python benchmarks/dcgan_recipes.py --lr 1e-3 --discriminator-mlp-head 512 256
    python benchmarks/dcgan_recipes.py --lr 1e-3 --discriminator-hidden 64 128 256
    python benchmarks/dcgan_recipes.py --lr 1e-3 --betas 0 0.99 --ema 0.999 0.9995
"""
from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any

from minigan.averaging import shadow_copy, update_average
from minigan.backend import get_backend
from minigan.bench.dcgan_quality import (TABLE_HEAD, TABLE_RULE, Scorer, add_run_arguments, check_run_arguments,
                                         eval_mode_summary, generator_samples, table_row)
from minigan.files import atomic_write_json
from minigan.gan import recompute_generator_statistics
from minigan.model import Sequential
from minigan.objectives import OBJECTIVES
from minigan.run.arguments import positive
from minigan.run.presets import PRESETS, Preset, build_gan
from minigan.run.realdata import RealData
from minigan.run.threads import blas_threads


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--lr-d", type=float, help="D's learning rate (default --lr)")
    parser.add_argument("--lr-g", type=float, help="G's learning rate (default --lr)")
    parser.add_argument("--lr-decay", choices=["none", "linear"], default="none", help="linear: to 0 over the run")
    parser.add_argument("--loss", choices=sorted(OBJECTIVES), default="non_saturating")
    parser.add_argument("--generator-hidden", type=int, nargs=2, help="G's channels, widest first")
    parser.add_argument("--discriminator-hidden", type=int, nargs="+",
                        help="D's channels, narrowest first (one k4 s2 convolution each)")
    parser.add_argument("--ema", type=float, nargs="+", default=[], metavar="DECAY",
                        help="also score a weight average of G with this decay (several: one average each)")
    parser.add_argument("--pack", type=positive, help="PacGAN packing degree (default: the preset's)")
    parser.add_argument("--d-steps", type=positive, help="D steps per G step (default: the preset's)")
    parser.add_argument("--label-smoothing", type=float, help="one-sided: the real target becomes 1 - this")
    parser.add_argument("--batch-size", type=positive, help="default: the preset's")
    parser.add_argument("--betas", type=float, nargs=2, metavar=("BETA1", "BETA2"),
                        help="Adam's betas for D and G (default: the preset's)")
    parser.add_argument("--no-discriminator-batch-norm", action="store_true",
                        help="D without BatchNorm (then one pass over the real and fake batch)")
    args = parser.parse_args(argv)
    check_run_arguments(parser, args)
    for name in ("lr_d", "lr_g"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    for decay in args.ema:
        if not 0.0 < decay < 1.0:
            parser.error(f"--ema must be in (0, 1), got {decay}")
    if len(set(args.ema)) != len(args.ema):
        parser.error(f"--ema names a decay twice: {args.ema}")
    if args.betas is not None and not all(0.0 <= beta < 1.0 for beta in args.betas):
        parser.error(f"--betas must be in [0, 1), got {args.betas}")
    if args.label_smoothing is not None and not 0.0 <= args.label_smoothing < 0.5:
        parser.error(f"--label-smoothing must be in [0, 0.5), got {args.label_smoothing}")
    side = {"digits": 8, "idx": 28}[args.data]  # each k4 s2 p1 convolution halves a side (rounding down)
    if args.discriminator_hidden and side >> (len(args.discriminator_hidden) - 1) < 2:
        parser.error(f"--discriminator-hidden: {len(args.discriminator_hidden)} convolutions shrink the "
                     f"{side}x{side} images of --data {args.data} below 1x1; at most {side.bit_length() - 1}")
    preset = variant_preset(args)
    if preset.batch_size % preset.pack:
        parser.error(f"the batch size ({preset.batch_size}) must be a multiple of --pack ({preset.pack})")
    args.lr_d = args.lr if args.lr_d is None else args.lr_d
    args.lr_g = args.lr if args.lr_g is None else args.lr_g
    return args


def variant_preset(args: argparse.Namespace) -> Preset:
    """The `dcgan-paper` preset with the variant's options (those given) applied."""
    return PRESETS["dcgan-paper"].with_overrides(
        loss=args.loss, generator_hidden=args.generator_hidden, discriminator_hidden=args.discriminator_hidden,
        pack=args.pack, d_steps=args.d_steps, label_smoothing=args.label_smoothing, batch_size=args.batch_size,
        betas=tuple(args.betas) if args.betas else None,
        discriminator_batch_norm=False if args.no_discriminator_batch_norm else None,
        discriminator_mlp_head=tuple(args.discriminator_mlp_head) if args.discriminator_mlp_head else None)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Trains the variant and returns one row per evaluation."""
    preset = variant_preset(args)
    backend = get_backend("numpy", dtype="float32", seed=args.seed)
    data = RealData(args.data, preset.batch_size, args.seed, image_layout=True, symmetric=True)
    gan = build_gan(preset, data.shape, backend)
    averages = {decay: shadow_copy(gan.generator) for decay in args.ema}
    score = Scorer(data, preset.latent_dim, args.samples, args.seed)
    rows, trained_s = [], 0.0
    for step in range(args.steps):
        remaining = 1 - step / args.steps if args.lr_decay == "linear" else 1.0
        gan.d_opt.lr, gan.g_opt.lr = args.lr_d * remaining, args.lr_g * remaining
        start = time.perf_counter()
        gan.train_step([data.batch(step * gan.d_steps + i) for i in range(gan.d_steps)]
                       if gan.d_steps > 1 else data.batch(step))
        for decay, average in averages.items():
            update_average(average, gan.generator, decay)
        trained_s += time.perf_counter() - start
        if (step + 1) % args.eval_every == 0:
            row = score.row(step + 1, trained_s, partial(generator_samples, gan.generator))
            if averages:
                row["averages"] = {str(decay): average_distances(average, score) for decay, average in averages.items()}
                row.update(row["averages"][str(args.ema[0])])  # the first decay's, as "ema" and "ema_eval"
            rows.append(row)
            print(f"{table_row(row)} {average_cells(row)} |", flush=True)
            if args.json:
                atomic_write_json(args.json, {"args": vars(args), "rows": rows})
    return rows


def average_cells(row: dict[str, Any]) -> str:
    """The weight averages' "train mode / eval mode" distances, "; " between decays."""
    if "averages" not in row:
        return "n/a (no --ema)"
    return "; ".join(f"{cell['ema']:.2f} / {cell['ema_eval']:.2f}" for cell in row["averages"].values())


def average_distances(average: Sequential, score: Scorer) -> dict[str, float]:
    """The weight average's distances in training mode and in evaluation mode with
    BatchNorm statistics of its own, recomputed as `GAN.sample` does."""
    training_mode = score(generator_samples(average, score.noise, True))[0]
    recompute_generator_statistics(average)
    return {"ema": training_mode, "ema_eval": score(generator_samples(average, score.noise, False))[0]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    preset = variant_preset(args)
    print(f"### dcgan networks on {args.data}: lr D {args.lr_d}, G {args.lr_g}, "
          f"decay {args.lr_decay}, loss {preset.loss}, G {preset.generator_hidden}, D {preset.discriminator_hidden}, "
          f"pack {preset.pack}, D steps {preset.d_steps}, label smoothing {preset.label_smoothing:g}, "
          f"batch {preset.batch_size}, betas {preset.betas}, "
          f"D BatchNorm {'on' if preset.discriminator_batch_norm else 'off'}, "
          f"D's MLP head {preset.discriminator_mlp_head or 'none'}, seed {args.seed}\n")
    decays = f" (decay {', '.join(map(str, args.ema))})" if args.ema else ""
    print(f"{TABLE_HEAD} weight average{decays}: train mode / eval mode |")
    print(f"{TABLE_RULE}---:|")
    with blas_threads(1):
        rows = run(args)
    print("\n" + eval_mode_summary(rows))


if __name__ == "__main__":
    main()
