"""psclient: Python workers for ps, the parameter-server trainer.

    import numpy as np, psclient
    with psclient.Client("tcp://127.0.0.1:7000", job="demo") as c:
        clock = c.hello()
        w = np.ones(4, np.float32)
        c.init_table(0, "w", w, psclient.optim.SGD(lr=0.5))
        c.push_pull(0, clock, np.full(4, 2, np.float32), 2, w); c.wait()   # w == 0.5

Client (client.py) speaks the protocol through libps_client.so.1; the
optimizers run on the servers (optim.py); errors are PsError subclasses
named by the protocol's codes (errors.py); psclient.pytorch wraps a
torch.nn.Module. docs/python.md has the whole picture.
"""
import os

from . import errors, optim
from .client import (DTYPES, FLAG_AFTER_ALL_DONE, FLAG_NO_CREATE, FLAG_SKIP, FLAG_SKIPPED,
                     Client)
from .errors import PsError
from ._lib import lib as _lib

__version__ = _lib.ps_client_version().decode()


def log_init(progname="ps-python", level=None):
    """The C client's log lines on stderr: program name and lowest level
    ("debug", "info", "notice", "warn", "error"; default $PS_LOG_LEVEL, else
    info). Process-wide; call before creating a Client."""
    level = level or os.environ.get("PS_LOG_LEVEL") or None
    errors.check(_lib.ps_client_log_init(progname.encode(), level.encode() if level else None))



__all__ = ["Client", "PsError", "errors", "optim", "log_init", "DTYPES", "FLAG_AFTER_ALL_DONE",
           "FLAG_NO_CREATE", "FLAG_SKIP", "FLAG_SKIPPED"]
