"""libps_client.so.1 through ctypes: the structs of ps_client.h laid out as
the C compiler lays them out, and every function's prototype.

Why ctypes: the package is then pure Python over the installed, versioned
C library (the same one a C or C++ trainer links), needs no compiler or
Python headers at install time, works for any Debian python3 version, and
releases the GIL during every call, so the C client's waits and its
heartbeat thread never hold up other Python threads. NumPy arrays reach
the C side by pointer: no copies (see client.py).

Where the library comes from, first found wins: $PS_CLIENT_LIB (a path),
the directory cmake --install wrote into _libdir.py, then the loader's own
search for the SONAME (ld.so.cache, LD_LIBRARY_PATH).
"""
import ctypes
import os

SONAME = "libps_client.so.1"


class Opts(ctypes.Structure):
    """ps_client_opts_t"""
    _fields_ = [
        ("job", ctypes.c_char_p),
        ("rank", ctypes.c_uint32),
        ("world", ctypes.c_uint32),
        ("max_staleness", ctypes.c_int),
        ("timeout_ms", ctypes.c_int64),
        ("stop", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("heartbeat_ms", ctypes.c_int64),
        ("server_timeout_ms", ctypes.c_int64),
        ("retries", ctypes.c_int),
        ("curve_server_key", ctypes.c_char_p),
        ("curve_public_key", ctypes.c_char_p),
        ("curve_secret_key", ctypes.c_char_p),
        ("fingerprint", ctypes.c_char_p),
        ("loss_scale", ctypes.c_double),
        ("loss_scale_window", ctypes.c_int64),
        ("stop_fd", ctypes.c_int),
    ]


class OptimSpec(ctypes.Structure):
    """ps_optim_spec_t"""
    _fields_ = [
        ("kind", ctypes.c_int),
        ("lr", ctypes.c_double),
        ("momentum", ctypes.c_double),
        ("nesterov", ctypes.c_bool),
        ("beta1", ctypes.c_double),
        ("beta2", ctypes.c_double),
        ("eps", ctypes.c_double),
        ("weight_decay", ctypes.c_double),
        ("rho", ctypes.c_double),
        ("schedule", ctypes.c_int),
        ("step_size", ctypes.c_uint64),
        ("gamma", ctypes.c_double),
        ("warmup_steps", ctypes.c_uint64),
        ("total_steps", ctypes.c_uint64),
        ("min_lr", ctypes.c_double),
        ("l1", ctypes.c_double),
        ("l2", ctypes.c_double),
        ("ftrl_beta", ctypes.c_double),
    ]


class ErrBuf(ctypes.Structure):
    """ps_errbuf_t"""
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 512)]


_c = ctypes
_P = ctypes.c_void_p
_F = ctypes.POINTER(ctypes.c_float)
_U64P = ctypes.POINTER(ctypes.c_uint64)
_E = ctypes.POINTER(ErrBuf)
_I64P = ctypes.POINTER(ctypes.c_int64)

# name: (restype, argtypes)
_PROTOTYPES = {
    "ps_client_sizeof": (_c.c_size_t, [_c.c_char_p]),
    "ps_client_version": (_c.c_char_p, []),
    "ps_client_log_init": (_c.c_int, [_c.c_char_p, _c.c_char_p]),
    "ps_client_load_key": (_c.c_int, [_c.c_char_p, _c.c_char_p, _c.c_char_p, _E]),
    "ps_client_opts_defaults": (None, [_c.POINTER(Opts)]),
    "ps_client_new": (_P, [_c.c_char_p, _c.POINTER(Opts), _E]),
    "ps_client_destroy": (None, [_c.POINTER(_P)]),
    "ps_client_n_shards": (_c.c_uint32, [_P]),
    "ps_client_set_fingerprint": (_c.c_int, [_P, _c.c_char_p]),
    "ps_client_hello": (_c.c_int, [_P, _I64P, _E]),
    "ps_client_job_id": (_c.c_uint64, [_P]),
    "ps_client_recover": (_c.c_int, [_P, _c.c_bool, _I64P, _E]),
    "ps_client_stop_heartbeats": (None, [_P]),
    "ps_client_report": (None, [_P, _c.c_uint64, _c.c_double]),
    "ps_client_reset": (None, [_P]),
    "ps_client_buffers_held": (_c.c_int, [_P]),
    "ps_client_init_table": (_c.c_int, [_P, _c.c_uint32, _c.c_char_p, _U64P, _c.c_int,
                                        _c.POINTER(OptimSpec), _F, _E]),
    "ps_client_push_pull": (_c.c_int, [_P, _c.c_uint32, _c.c_int64, _F, _c.c_uint64,
                                       _c.c_float, _c.c_uint32, _F]),
    "ps_client_push": (_c.c_int, [_P, _c.c_uint32, _c.c_int64, _F, _c.c_uint64, _c.c_float,
                                  _c.c_uint32]),
    "ps_client_pull": (_c.c_int, [_P, _c.c_uint32, _c.c_int64, _c.c_uint32, _F]),
    "ps_client_wait": (_c.c_int, [_P, _E]),
    "ps_client_wait_table": (_c.c_int, [_P, _c.c_uint32, _E]),
    "ps_client_reply_flags": (_c.c_uint32, [_P]),
    "ps_client_done": (_c.c_int, [_P, _E]),
    "ps_client_bye": (_c.c_int, [_P, _E]),
    "ps_client_init_sparse": (_c.c_int, [_P, _c.c_uint32, _c.c_char_p, _c.c_uint32,
                                         _c.POINTER(OptimSpec), _c.c_double, _c.c_uint64, _E]),
    "ps_client_sparse_pull": (_c.c_int, [_P, _c.c_uint32, _c.c_int64, _c.c_uint32, _U64P,
                                         _c.c_uint64, _F]),
    "ps_client_sparse_push": (_c.c_int, [_P, _c.c_uint32, _c.c_int64, _U64P, _c.c_uint64, _F]),
    "ps_client_admin": (_c.c_int, [_P, _c.c_uint32, _c.c_int, _c.POINTER(_c.c_void_p), _E]),
    "ps_client_bytes_sent": (_c.c_uint64, [_P]),
    "ps_client_bytes_received": (_c.c_uint64, [_P]),
    "ps_client_requests": (_c.c_uint64, [_P]),
    "ps_optim_spec_check": (_c.c_char_p, [_c.POINTER(OptimSpec)]),
    "ps_strerror": (_c.c_char_p, [_c.c_int]),
    "ps_errname": (_c.c_char_p, [_c.c_int]),
}


def _candidates():
    env = os.environ.get("PS_CLIENT_LIB")
    if env:
        return [env]  # asked for: that one or an error, never another
    out = []
    try:
        from . import _libdir
        out.append(os.path.join(_libdir.LIBDIR, SONAME))
    except ImportError:
        pass
    out.append(SONAME)
    return out


def _load():
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    else:
        raise ImportError("psclient: cannot load %s (%s); install the ps package or set "
                          "PS_CLIENT_LIB to its path" % (SONAME, "; ".join(errors)))
    for name, (res, args) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    # the structs above must be the library's: a drift would corrupt memory
    for cname, py in (("ps_client_opts_t", Opts), ("ps_optim_spec_t", OptimSpec),
                      ("ps_errbuf_t", ErrBuf)):
        size = lib.ps_client_sizeof(cname.encode())
        if size != ctypes.sizeof(py):
            raise ImportError("psclient: %s is %d bytes in %s but %d here: the library and "
                              "this package are from different versions"
                              % (cname, size, lib._name, ctypes.sizeof(py)))
    return lib


lib = _load()
# libc's free, for the documents ps_client_admin hands over (malloc'd)
libc_free = ctypes.CDLL(None).free
libc_free.argtypes = [ctypes.c_void_p]
libc_free.restype = None
