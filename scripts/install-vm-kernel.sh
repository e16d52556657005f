#!/usr/bin/env bash
# Debian's stock kernel for the VM lab, from the Debian archive like every other
# dependency: linux-image-amd64's current image is downloaded and unpacked (never
# installed: no initramfs, no bootloader), its vmlinuz kept in /var/cache/wg-tuner/vm
# and its modules in /lib/modules/VERSION (depmod'ed), where virtme-ng looks for them.
# Idempotent: nothing is fetched when that version is already in place.
set -euo pipefail
cache=${WG_TUNER_VM_KERNEL_DIR:-/var/cache/wg-tuner/vm}
image=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$image" ]; then
  apt-get update -qq
  image=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
fi
version=${image#linux-image-}
if [ -f "$cache/vmlinuz-$version" ] && [ -f "/lib/modules/$version/modules.dep" ]; then
  exit 0
fi
echo "install-vm-kernel: fetching $image (Debian's stock kernel, for the VM lab)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq "$image" 2>/dev/null)
dpkg -x "$work"/"$image"_*.deb "$work/root"
mkdir -p "$cache" /lib/modules
rm -rf "/lib/modules/$version"
cp -a "$work/root/lib/modules/$version" "/lib/modules/$version"
depmod "$version"
install -m 0644 "$work/root/boot/vmlinuz-$version" "$cache/vmlinuz-$version"
echo "install-vm-kernel: $cache/vmlinuz-$version ready"
