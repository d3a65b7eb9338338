# cmake --install (DESTDIR) puts binaries, units, configs and docs in place;
# the installed units pass systemd-analyze verify; CPack's .deb installs into
# an empty root with dpkg and holds the same files.
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
           PrivateDevices=yes RestrictAddressFamilies= "CapabilityBoundingSet=$" LimitNOFILE=; do
    grep -q "^$opt" "$units/ps-server@0.service" || fail "ps-server@.service lacks $opt"
done
pass "installed units verify (Type=notify, watchdog, restart, hardening)"

(cd "$BUILD" && cpack -G DEB >"$WORK/cpack.log" 2>&1) || { cat "$WORK/cpack.log" >&2; fail "cpack"; }
deb=$(ls "$BUILD"/ps-*.deb | head -1)
[ -f "$deb" ] || fail "no .deb produced"
fresh="$WORK/fresh"
mkdir -p "$fresh/var/lib/dpkg/info" "$fresh/var/lib/dpkg/updates"
touch "$fresh/var/lib/dpkg/status"
dpkg --root="$fresh" --force-depends --force-not-root -i "$deb" >"$WORK/dpkg.log" 2>&1 \
    || { cat "$WORK/dpkg.log" >&2; fail "dpkg -i"; }
[ -x "$fresh/usr/bin/ps-server" ] && [ -f "$fresh/usr/lib/systemd/system/ps-server@.service" ] \
    || fail "the .deb lacks files"
"$fresh/usr/bin/ps-server" --help | grep -q "Usage: ps-server" || fail "installed ps-server does not run"
rm -f "$deb"
pass "$(basename "$deb") installs into an empty root and its ps-server runs"
