# cmake --install (DESTDIR) puts binaries, units, configs and docs in place;
# the installed units pass systemd-analyze verify; the installed client
# library builds docs/examples/client.c with only `pkg-config --cflags
# --libs ps-client` (and a CMake project with find_package), which then
# runs against a real server, and the installed Python package imports and
# trains from that root; CPack's .deb installs into an empty root with dpkg
# and holds the same files (its maintainer scripts are no-ops, run outside
# the root, which has no shell: --force-script-chrootless).
. "$(dirname "$0")/lib.sh"
BUILD=$(dirname "$BIN")
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (tools/setup.sh installs systemd)"

root="$WORK/root"
# the prefix this build was configured with (/usr by default; the units name it)
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")
etc=$([ "$prefix" = /usr ] && echo /etc || echo "$prefix/etc")
DESTDIR="$root" cmake --install "$BUILD" >"$WORK/install.log" 2>&1 || fail "cmake --install"
for f in $prefix/bin/ps-server $prefix/bin/ps-worker $prefix/bin/ps-launch $prefix/bin/ps-ctl \
         $prefix/lib/systemd/system/ps-server@.service $prefix/lib/systemd/system/ps-worker@.service \
         $prefix/lib/systemd/system/ps.target $etc/ps/server.conf $etc/ps/worker.conf \
         $prefix/share/doc/ps/README.md $prefix/share/doc/ps/examples/fashion-mlp.conf; do
    [ -e "$root$f" ] || fail "not installed: $f"
done
# Under pipefail no pipeline here ends in grep -q: grep -q exits at the
# first match, and a writer with more to write (ps-server --help is over
# 4 KB, two writes) dies of SIGPIPE, failing the check now and then.

# the client library, as a user of the installed copy builds against it
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$BUILD/CMakeCache.txt")
case "$libdir" in /*) ;; *) libdir="$prefix/$libdir" ;; esac
for f in "$libdir/libps_client.so.1" "$libdir/libps_client.so" "$libdir/pkgconfig/ps-client.pc" \
         "$libdir/cmake/ps-client/ps-client-config.cmake" "$prefix/include/ps/ps_client.h" \
         "$prefix/lib/python3/dist-packages/psclient/__init__.py" \
         "$prefix/share/doc/ps/examples/client.c" "$prefix/share/doc/ps/examples/torch_fashion_cnn.py"; do
    [ -e "$root$f" ] || fail "not installed: $f"
done
soname=$(readelf -d "$root$libdir/libps_client.so.1" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libps_client.so.1 ] || fail "SONAME is '$soname'"
leaked=$(nm -D --defined-only "$root$libdir/libps_client.so.1" | awk '{print $3}' | sed 's/@.*//' |
         grep -v -E '^(PS_CLIENT_1|ps_client_.*|ps_strerror|ps_errname|ps_err_set|ps_x.*|ps_optim_.*|ps_sched_names)$' || true)
[ -z "$leaked" ] || fail "libps_client.so.1 exports internal symbols: $leaked"
flags=$(PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_PATH="$root$libdir/pkgconfig" \
        pkg-config --cflags --libs ps-client) || fail "pkg-config ps-client"
# shellcheck disable=SC2086 # the flags are words
cc -std=c11 -Wall -Wextra -Werror "$root$prefix/share/doc/ps/examples/client.c" $flags \
    -o "$WORK/client" 2>"$WORK/cc.log" || { cat "$WORK/cc.log" >&2; fail "docs/examples/client.c does not build with: $flags"; }
mkdir -p "$WORK/cm"
printf '%s\n' "cmake_minimum_required(VERSION 3.18)" "project(user C)" \
    "find_package(ps-client 0.1 REQUIRED)" \
    "add_executable(client $root$prefix/share/doc/ps/examples/client.c)" \
    "target_link_libraries(client PRIVATE ps::client)" > "$WORK/cm/CMakeLists.txt"
(cmake -S "$WORK/cm" -B "$WORK/cm/b" -DCMAKE_PREFIX_PATH="$root$prefix" \
    && cmake --build "$WORK/cm/b") >"$WORK/cm.log" 2>&1 || { cat "$WORK/cm.log" >&2; fail "find_package(ps-client)"; }
# a sanitizer build's library needs the ASan runtime loaded before it, in
# programs that are not instrumented themselves (the example built just
# now, python3): preloaded, as a user of such a build would have to
preload=""
if readelf -d "$root$libdir/libps_client.so.1" | grep 'NEEDED.*libasan' >/dev/null; then
    preload=$(cc -print-file-name=libasan.so)
fi
start_server api 0 1
LD_PRELOAD="$preload" LD_LIBRARY_PATH="$root$libdir" "$WORK/client" "$EP_api" >"$WORK/client.out" 2>&1 \
    || { cat "$WORK/client.out" >&2; fail "the example client failed"; }
grep -qx "clock 0 -> 1: w = 0.5 0.5 0.5 0.5" "$WORK/client.out" || fail "example client: $(cat "$WORK/client.out")"
# a server of its own: the first run's BYE ended job 'example' on api
start_server api2 0 1
LD_PRELOAD="$preload" LD_LIBRARY_PATH="$root$libdir" "$WORK/cm/b/client" "$EP_api2" 2>&1 | grep "w = 0.5" >/dev/null \
    || fail "the find_package build of the example failed"
pass "libps_client.so.1 (exports only its API) builds docs/examples/client.c with '$flags' and with find_package(ps-client); it ran: $(cat "$WORK/client.out")"

# the installed Python package; its _libdir.py names the library's directory
py_root="$root$prefix/lib/python3/dist-packages"
# (CPython's own allocations are not leak-checked, as in tests/CMakeLists.txt)
LD_PRELOAD="$preload" ASAN_OPTIONS="${preload:+detect_leaks=0}" \
PS_CLIENT_LIB="$root$libdir/libps_client.so.1" PYTHONPATH="$py_root" PYTHONDONTWRITEBYTECODE=1 \
    /usr/bin/python3 - "$EP_api" "$py_root" >"$WORK/py.out" 2>&1 <<'PYEOF' || { cat "$WORK/py.out" >&2; fail "installed psclient"; }
import sys, numpy as np, psclient, psclient.optim
from psclient import _libdir
assert psclient.__file__.startswith(sys.argv[2]), psclient.__file__
with psclient.Client(sys.argv[1], job="installed") as c:
    clock = c.hello()
    w = np.ones(4, np.float32)
    c.init_table(0, "w", w, psclient.optim.SGD(lr=0.5))
    c.push_pull(0, clock, np.full(4, 2, np.float32), 2, w)
    c.wait()
assert list(w) == [0.5] * 4, w
print("psclient %s, libdir %s: w = %s" % (psclient.__version__, _libdir.LIBDIR, w))
PYEOF
grep -q "libdir $libdir:" "$WORK/py.out" || fail "_libdir.py does not name $libdir: $(cat "$WORK/py.out")"
pass "installed Python package: $(cat "$WORK/py.out")"

scores=""
units="$WORK/units"
mkdir -p "$units"
# verify needs the executables the units name: point them into the install root
for u in ps-server ps-worker; do
    sed "s|$prefix/bin/|$root$prefix/bin/|g" "$root$prefix/lib/systemd/system/$u@.service" > "$units/$u@0.service"
done
cp "$root$prefix/lib/systemd/system/ps.target" "$units/"
(cd "$units" && systemd-analyze verify ./ps-server@0.service ./ps-worker@0.service ./ps.target) \
    >"$WORK/verify.log" 2>&1 || { cat "$WORK/verify.log" >&2; fail "systemd-analyze verify"; }
[ ! -s "$WORK/verify.log" ] || { cat "$WORK/verify.log" >&2; fail "systemd-analyze verify warned"; }
for opt in Type=notify WatchdogSec= Restart=on-failure EnvironmentFile= StateDirectory= \
           RuntimeDirectory= NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
           PrivateDevices=yes RestrictAddressFamilies= "CapabilityBoundingSet=$" LimitNOFILE= \
           RestartPreventExitStatus=78 SystemCallFilter=@system-service SystemCallErrorNumber=EPERM \
           MemoryDenyWriteExecute=yes ProtectProc=invisible UMask=0027; do
    grep -q "^$opt" "$units/ps-server@0.service" || fail "ps-server@.service lacks $opt"
done
grep -q "^RestartPreventExitStatus=78" "$units/ps-worker@0.service" || fail "ps-worker@.service restarts a bad config"
# systemd-analyze's exposure score (0 = locked down, 10 = exposed); 3.6 before
# the hardening of issue 16, 1.2 after
for u in ps-server@0.service ps-worker@0.service; do
    score=$(cd "$units" && systemd-analyze security --offline=yes "./$u" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    [ -n "$score" ] || fail "no systemd-analyze security score for $u"
    check "$score <= 2.0"
    scores="$scores $u $score"
done
pass "installed units verify (Type=notify, watchdog, restart, hardening); exposure:$scores"

# man pages: every program in the build's one list, from its own --help
[ -s "$BUILD/man-programs.txt" ] || fail "no man-programs.txt (help2man missing at configure time?)"
while read -r prog; do
    page="$root$prefix/share/man/man1/$prog.1.gz"
    [ -f "$page" ] || fail "no man page for $prog"
    zcat "$page" | grep "^\.SH NAME" >/dev/null || fail "$prog.1 has no NAME section"
    "$root$prefix/bin/$prog" --version | grep -x "$prog [0-9][0-9.]*" >/dev/null || fail "$prog --version"
done < "$BUILD/man-programs.txt"
pass "man pages for $(tr '\n' ' ' < "$BUILD/man-programs.txt")"

(cd "$BUILD" && cpack -G DEB >"$WORK/cpack.log" 2>&1) || { cat "$WORK/cpack.log" >&2; fail "cpack"; }
deb=$(ls "$BUILD"/ps-*.deb | head -1)
[ -f "$deb" ] || fail "no .deb produced"
fresh="$WORK/fresh"
mkdir -p "$fresh/var/lib/dpkg/info" "$fresh/var/lib/dpkg/updates"
touch "$fresh/var/lib/dpkg/status"
dpkg --root="$fresh" --force-depends --force-not-root --force-script-chrootless -i "$deb" >"$WORK/dpkg.log" 2>&1 \
    || { cat "$WORK/dpkg.log" >&2; fail "dpkg -i"; }
[ -x "$fresh/usr/bin/ps-server" ] && [ -f "$fresh/usr/lib/systemd/system/ps-server@.service" ] \
    || fail "the .deb lacks files"
for f in "$libdir/libps_client.so.1" "$libdir/pkgconfig/ps-client.pc" /usr/include/ps/ps_client.h \
         /usr/lib/python3/dist-packages/psclient/pytorch.py /usr/lib/python3/dist-packages/psclient/_libdir.py; do
    [ -e "$fresh$f" ] || fail "the .deb lacks $f"
done
dpkg-deb -I "$deb" shlibs 2>/dev/null | grep "^libps_client 1 " >/dev/null || fail "the .deb declares no shlibs for libps_client"
"$fresh/usr/bin/ps-server" --help | grep "Usage: ps-server" >/dev/null || fail "installed ps-server does not run"
# Debian policy: versioned Depends (libc6 included), conffiles, stripped
# binaries, a changelog and a copyright file; lintian finds no error
dpkg-deb -f "$deb" Depends | grep "libc6 (>= " >/dev/null || fail "Depends lacks a versioned libc6: $(dpkg-deb -f "$deb" Depends)"
dpkg-deb -e "$deb" "$WORK/control"
for f in /etc/ps/server.conf /etc/ps/worker.conf; do
    grep -qx "$f" "$WORK/control/conffiles" 2>/dev/null || fail "$f is not a conffile"
done
! readelf -S "$fresh/usr/bin/ps-server" | grep -E "\.(symtab|debug_info)" >/dev/null || fail "ps-server is not stripped"
[ -f "$fresh/usr/share/doc/ps/copyright" ] && [ -f "$fresh/usr/share/doc/ps/changelog.gz" ] \
    || fail "no copyright or changelog in the .deb"
echo "bind 127.0.0.2 # edited by the operator" >> "$fresh/etc/ps/server.conf"
dpkg --root="$fresh" --force-depends --force-not-root --force-script-chrootless -i "$deb" >>"$WORK/dpkg.log" 2>&1 \
    || { cat "$WORK/dpkg.log" >&2; fail "dpkg -i again"; }
grep -q "edited by the operator" "$fresh/etc/ps/server.conf" || fail "a reinstall overwrote an edited conffile"
if command -v lintian >/dev/null; then
    lintian --tag-display-limit 0 "$deb" >"$WORK/lintian.log" 2>&1 || true
    ! grep -q "^E: " "$WORK/lintian.log" || { cat "$WORK/lintian.log" >&2; fail "lintian reports errors"; }
    lint="lintian: no errors, $(grep -c '^W: ' "$WORK/lintian.log") warnings"
else
    lint="lintian not installed (tools/setup.sh installs it)"
fi
rm -f "$deb"
pass "$(basename "$deb") installs into an empty root, its ps-server runs, an edited conffile survives a reinstall; $lint"
