"""Training processes never outlive the process that started them.

On Linux the kernel sends SIGKILL to a process the moment its parent dies (PR_SET_PDEATHSIG),
set in the forkserver (whose parent is the service or worker) and in every training process
(whose parent is the forkserver): SIGKILL the service and the chain is gone at once, and the
resource tracker, whose pipe they held, reads EOF and exits too.

The forkserver imports this module first (processes.PRELOAD); the guard at the bottom arms
the forkserver only, whoever else imports the module.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# Set by processes.start_forkserver (main thread) for the forkserver it starts.
ARM_FORKSERVER = "MLOPS_FORKSERVER_DIES_WITH_PARENT"


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies; False off Linux."""
    if sys.platform != "linux":
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the request took effect
    return True


def _is_forkserver() -> bool:
    # The forkserver runs as `python -c "from multiprocessing.forkserver import main; …"`.
    return sys.argv == ["-c"] and "multiprocessing.forkserver" in sys.modules


if _is_forkserver() and os.environ.get(ARM_FORKSERVER) == "1":
    die_with_parent()
