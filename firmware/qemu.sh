#!/usr/bin/env bash
# Prints the root of an unpacked QEMU (qemu-system-arm and qemu-system-misc from the
# distribution's packages, with the libraries they need), downloading and unpacking it into a
# cache folder the first time. Nothing is installed, so nothing else on the machine changes
# (`apt-get install qemu-system-arm` would remove a backported qemu-utils here).
set -euo pipefail
cache=${TESSERA_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tessera-qemu}
root="$cache/root"
if [ -x "$root/usr/bin/qemu-system-arm" ] && [ -x "$root/usr/bin/qemu-system-riscv32" ]; then
  echo "$root"
  exit 0
fi
mkdir -p "$cache/debs"
sudo_=""
if [ "$(id -u)" != 0 ] && command -v sudo > /dev/null; then sudo_=sudo; fi
$sudo_ apt-get update -qq >&2 || true
packages="qemu-system-arm qemu-system-misc libfdt1 libcapstone4 libpmem1 librdmacm1 libibverbs1
  libslirp0 libvdeplug2 libndctl6 libdaxctl1 libnl-3-200 libnl-route-3-200"
(cd "$cache/debs" && apt-get download $packages >&2 2>/dev/null) ||
  (cd "$cache/debs" && $sudo_ apt-get download $packages >&2)
for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$root"; done
"$root/usr/bin/qemu-system-arm" --version > /dev/null 2>&1 ||
  LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" "$root/usr/bin/qemu-system-arm" --version >&2
echo "$root"
