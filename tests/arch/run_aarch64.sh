#!/usr/bin/env bash
# tests/arch/run_aarch64.sh — cross-builds tests/arch/fiber_switch.c for
# aarch64 and runs it under qemu-user, so the aarch64 context switch is
# exercised on an x86_64 machine. Exit 77 (meson: skipped) when the cross
# compiler or qemu is not installed.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
cc=aarch64-linux-gnu-gcc
if ! command -v "$cc" >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
	echo "aarch64 cross compiler or qemu-aarch64 missing: skipped"
	exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$cc" -std=c11 -O2 -static -o "$out/fiber_switch" \
	"$src/tests/arch/fiber_switch.c" "$src/lib/fiber_aarch64.S"
qemu-aarch64 "$out/fiber_switch"
