#!/bin/sh
# tools/test-windows.sh [BUILDDIR] — cross-builds Zokio for Windows x64 with
# mingw-w64 (tools/cross/mingw64.ini) into BUILDDIR (default build-win) and
# runs the Windows tests under wine with `meson test`: the Win64 fiber
# switch, the IOCP conformance suite and the TCP echo + file copy workloads.
# Results land in BUILDDIR/meson-logs/testlog.json like the Linux suite's.
# Wine runs in a private prefix kept in BUILDDIR/wineprefix (created on the
# first run, ~10 s). Exits nonzero when a build step or a test fails.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build-win}
case $build in /*) ;; *) build=$here/$build ;; esac

for tool in x86_64-w64-mingw32-gcc-posix wine meson ninja; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "test-windows: $tool not found (apt-get install mingw-w64 wine wine64 meson ninja-build)" >&2
		exit 1
	fi
done

start=$(date +%s)
if [ ! -f "$build/build.ninja" ]; then
	meson setup --cross-file "$here/tools/cross/mingw64.ini" "$build" "$here"
elif ! grep -q 'x86_64-w64-mingw32' "$build/build.ninja"; then
	echo "test-windows: $build is not a mingw-w64 build directory" >&2
	exit 1
fi
ninja -C "$build" -j2

mkdir -p "$build/wineprefix"
WINEPREFIX="$build/wineprefix"
WINEDEBUG=-all
export WINEPREFIX WINEDEBUG
if [ ! -f "$WINEPREFIX/system.reg" ]; then
	wineboot -i >/dev/null 2>&1 || true
fi

rc=0
# Two test processes: each wine process also runs a wineserver thread.
meson test -C "$build" --num-processes 2 --print-errorlogs || rc=$?
wineserver -k >/dev/null 2>&1 || true
echo "test-windows: $(( $(date +%s) - start )) s, exit $rc"
exit $rc
