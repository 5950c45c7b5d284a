"""Training-step throughput: minigan per backend against the PyTorch reference and the roofline.

The same measurement as `minigan bench` (the code lives in `minigan.bench.step` and
`minigan.bench.report`); this script
runs it on the grid holding the three cells the speed targets name (64x256, 256x512,
1024x1024), with the PyTorch reference, unless
told otherwise:

    python benchmarks/step_throughput.py                       # batch 64, 256, 1024 x hidden 256, 512, 1024
    python benchmarks/step_throughput.py --batch-sizes 64 4096 --hidden 1024 --rounds 5
"""
import sys

from minigan.run.cli import main

DEFAULTS = ["--torch", "--batch-sizes", "64", "256", "1024", "--hidden", "256", "512", "1024"]

if __name__ == "__main__":
    sys.exit(main(["bench", *(sys.argv[1:] or DEFAULTS)]))
