"""The server's and the client's error codes (common/ps_err.h, the numbers
that travel in replies) as exceptions that carry the message.

Every code has a class named by its stable name (``psclient.errors.EDEAD``),
all subclasses of PsError; ``PsError.from_code`` picks the class. The table
below is checked against the library at import, so a code added in C and
not here fails loudly instead of becoming a generic error.
"""
from ._lib import lib

# number, name, meaning (docs/protocol.md "Error codes" has what each means)
CODES = [
    (-1, "ENOMEM"), (-2, "EINVAL"), (-3, "ERANGE"), (-4, "EPROTO"), (-5, "EAGAIN"),
    (-6, "ETIME"), (-7, "ENET"), (-8, "EVERSION"), (-9, "ENOTABLE"), (-10, "ENOJOB"),
    (-11, "ECONFLICT"), (-12, "ENONFINITE"), (-13, "EIO"), (-14, "EFORMAT"), (-15, "EINTR"),
    (-16, "EDEAD"), (-17, "ERESTARTED"), (-18, "ESTALE"), (-19, "ENOCKPT"), (-20, "EPERM"),
    (-21, "EAUTH"), (-22, "EWORLD"), (-23, "EFINISHED"),
]

# what a rejoin repairs: declared dead, a shard restarted, the job rolled back
RECOVERABLE = frozenset((-16, -17, -18))


class PsError(Exception):
    """An error of libps_client or of a server's reply.

    code: the negative number (stable, on the wire); name: "EDEAD" ...;
    message: the detail (shard, endpoint, op, table, clock, the server's
    reason); recoverable: True for EDEAD, ERESTARTED, ESTALE, which
    Client.recover repairs.
    """
    code = 0
    name = "?"

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    @property
    def recoverable(self):
        return self.code in RECOVERABLE

    def __str__(self):
        return "%s (%s %d)" % (self.message, self.name, self.code)

    @staticmethod
    def from_code(code, message=""):
        cls = _BY_CODE.get(code)
        if cls is None:
            err = PsError(message or "error %d" % code, code)
            err.name = lib.ps_errname(code).decode()
            return err
        return cls(message or lib.ps_strerror(code).decode())


_BY_CODE = {}
for _num, _name in CODES:
    if lib.ps_errname(_num).decode() != _name:
        raise ImportError("psclient: error %d is %s in libps_client, %s here"
                          % (_num, lib.ps_errname(_num).decode(), _name))
    _cls = type(_name, (PsError,), {"code": _num, "name": _name,
                                    "__doc__": lib.ps_strerror(_num).decode()})
    globals()[_name] = _cls
    _BY_CODE[_num] = _cls
if lib.ps_errname(CODES[-1][0] - 1).decode() != "EUNKNOWN":
    raise ImportError("psclient: libps_client knows error %d (%s), this package does not"
                      % (CODES[-1][0] - 1, lib.ps_errname(CODES[-1][0] - 1).decode()))


def check(rc, err=None):
    """Raises the error of rc (a PS_* code) with err's message; returns rc
    (0) otherwise."""
    if rc == 0:
        return 0
    msg = err.msg.decode(errors="replace") if err is not None and err.msg else ""
    raise PsError.from_code(rc, msg)
