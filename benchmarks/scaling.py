"""Data-parallel scaling: samples/s of the MLP (`idx`) and `dcgan-paper` presets' training step
on K processes over MPI against one process, and the share of each step spent in the
gradient all-reduce. See minigan/bench/scaling.py for what is measured and how.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scaling.py
    python benchmarks/scaling.py --presets dcgan-paper --batch-sizes 256 --busy-polling
"""
from minigan.bench.scaling import main

if __name__ == "__main__":
    main()
