"""`minigan launch`: runs `minigan train` on K processes through `mpirun`, with a Ctrl-C
that stops them cleanly.

`mpirun -n K minigan train ...` trains data-parallel as well; what `launch` adds is the
Ctrl-C. Open MPI's mpirun answers SIGINT by terminating its processes: SIGTERM, then
SIGKILL a quarter of a second later (measured with Open MPI 5.0, docs/scaling.md), too
soon for rank 0 to finish its step and write a checkpoint. `launch` runs mpirun in a
session of its own and turns the first Ctrl-C into SIGUSR1, which mpirun forwards to
every rank: the ranks stop after the same step, rank 0 writes the checkpoint, and the
status is 130. A second Ctrl-C ends the job at once.
"""
from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from typing import Any, Sequence

from ..distributed import MPI_INSTALL_HINT, DistributedError, find_mpirun


def mpirun_command(processes: int, command: Sequence[str], mpirun_args: str = "") -> list[str]:
    """The mpirun command line that runs `minigan <command>` on `processes` processes."""
    if processes < 1:
        raise ValueError(f"the number of processes must be a positive integer, got {processes}")
    if not command or command[0] != "train":
        raise ValueError(f"launch runs `train` on several processes, e.g. `minigan launch -n 2 train "
                         f"--preset dcgan`; got {' '.join(command) or 'no command'}")
    mpirun = find_mpirun()
    if mpirun is None:
        raise DistributedError(f"launch needs mpirun, which is not on the PATH; {MPI_INSTALL_HINT}")
    return [mpirun, "-n", str(processes), *shlex.split(mpirun_args), sys.executable, "-m", "minigan", *command]


def launch(processes: int, command: Sequence[str], mpirun_args: str = "") -> int:
    """Runs `minigan <command>` on `processes` processes and returns mpirun's status.

    Args:
        processes: K, the number of processes (the global batch is split over them).
        command: the minigan command and its flags, e.g. ["train", "--preset", "dcgan"].
        mpirun_args: further mpirun options as one string, e.g. "--hostfile hosts".
    """
    child = subprocess.Popen(mpirun_command(processes, command, mpirun_args), start_new_session=True)
    interrupts = 0

    def forward(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1  # first: stop after the current step; then: end the job now
        child.send_signal(signal.SIGUSR1 if interrupts == 1 else signal.SIGINT)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
