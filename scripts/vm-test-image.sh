#!/usr/bin/env bash
# Builds the VM test guest: a small bootable Debian bookworm qcow2 that behaves like a cloud image
# (BIOS boot with no -kernel, serial console on ttyS0, DHCP on the first NIC, SSH keys and host
# name taken from a NoCloud seed). The kumo-vm tests and `kumo bench vm` boot it under QEMU.
#
#   bash scripts/vm-test-image.sh            # prints the image's path (last line of stdout)
#
# Contents: debootstrap minbase + linux-image-cloud-amd64 + openssh-server + systemd-networkd, and
# instead of the (large, Python) cloud-init a small NoCloud reader, `kumo-nocloud`: at boot it
# finds the disk labelled `cidata` (ISO 9660 or vfat), reads `meta-data` (`local-hostname`) and
# the `#cloud-config` in `user-data` (`users:` with `name:` and `ssh_authorized_keys:`, the subset
# Kumo's VM backend writes), creates the users and installs their keys before sshd starts.
#
# Layout: MBR (syslinux mbr.bin) | p1 FAT16 "KUMOBOOT", syslinux + kernel + initrd | p2 ext4
# "kumo-root". Both file systems are built from directories (mkfs.ext4 -d, mtools), so no loop
# device or mount is needed. The result is cached by content: the file name carries a hash of this
# script, so a second run with the same script returns at once.
#
# Needs root (debootstrap) and: debootstrap qemu-utils syslinux syslinux-common mtools dosfstools
# fdisk e2fsprogs. Cache: $KUMO_VM_IMAGE_DIR, default /var/cache/kumo/vm-images.
set -euo pipefail

script="$(readlink -f "$0")"
hash="$(sha256sum "$script" | cut -c1-16)"
cache="${KUMO_VM_IMAGE_DIR:-/var/cache/kumo/vm-images}"
image="$cache/kumo-test-debian-$hash.qcow2"
mirror="${KUMO_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ -f "$image" ]; then
  echo "vm-test-image: cached" >&2
  echo "$image"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "vm-test-image: debootstrap needs root: run this as root once (the image is then cached in $cache)" >&2
  exit 1
fi
for tool in debootstrap qemu-img syslinux mcopy mkfs.vfat sfdisk mkfs.ext4; do
  command -v "$tool" >/dev/null || {
    echo "vm-test-image: $tool is missing: apt-get install debootstrap qemu-utils syslinux syslinux-common mtools dosfstools fdisk e2fsprogs" >&2
    exit 1
  }
done

mkdir -p "$cache"
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
start=$SECONDS

echo "vm-test-image: debootstrap bookworm (minbase) into $root" >&2
debootstrap --variant=minbase \
  --include=linux-image-cloud-amd64,openssh-server,systemd-sysv,udev,kmod,dbus \
  bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
echo "vm-test-image: debootstrap done in $((SECONDS - start)) s" >&2

# --- configure the guest ---
echo kumo-guest >"$root/etc/hostname"
cat >"$root/etc/fstab" <<'EOF'
LABEL=kumo-root / ext4 defaults,errors=remount-ro 0 1
EOF
cat >"$root/etc/systemd/network/80-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF
ln -sf /lib/systemd/system/systemd-networkd.service \
  "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
# No password logins at all: keys only.
cat >"$root/etc/ssh/sshd_config.d/kumo.conf" <<'EOF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
# ed25519 only: RSA host key generation takes seconds under TCG.
HostKey /etc/ssh/ssh_host_ed25519_key
EOF
# Host keys are made on first boot (each VM its own), not baked into the image.
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/usr/local/sbin/kumo-nocloud" <<'EOF'
#!/bin/sh
# kumo-nocloud: reads a NoCloud seed (a disk labelled cidata) and applies the part Kumo writes:
# local-hostname from meta-data; users with ssh_authorized_keys from user-data's #cloud-config.
set -u
dev="$(blkid -t LABEL=cidata -o device 2>/dev/null | head -n1)"
[ -n "$dev" ] || dev="$(blkid -t LABEL=CIDATA -o device 2>/dev/null | head -n1)"
[ -n "$dev" ] || { echo "kumo-nocloud: no cidata disk"; exit 0; }
seed=/run/kumo-nocloud
mkdir -p "$seed"
mount -o ro "$dev" "$seed" || { echo "kumo-nocloud: cannot mount $dev"; exit 0; }
# Like cloud-init's per-instance modules: apply a seed once, so keys a user adds later survive
# reboots; a new instance-id (a changed seed) applies again.
id="$(sed -n 's/^instance-id:[[:space:]]*//p' "$seed/meta-data" | tr -d "\"'" | head -n1)"
if [ -n "$id" ] && [ "$(cat /var/lib/kumo-nocloud/instance-id 2>/dev/null)" = "$id" ]; then
  umount "$seed"
  echo "kumo-nocloud: instance $id already applied"
  exit 0
fi
host="$(sed -n 's/^local-hostname:[[:space:]]*//p' "$seed/meta-data" | tr -d "\"'" | head -n1)"
if [ -n "$host" ]; then
  echo "$host" >/etc/hostname
  hostname "$host"
  grep -q "[[:space:]]$host\$" /etc/hosts || echo "127.0.1.1 $host" >>/etc/hosts
fi
# users: - name: X ... ssh_authorized_keys: - key  (one user per "- name:")
awk '
  /^users:/ { inusers = 1; next }
  inusers && /^[^ #-]/ { inusers = 0 }
  !inusers { next }
  /^[[:space:]]*-[[:space:]]*name:/ { sub(/^[[:space:]]*-[[:space:]]*name:[[:space:]]*/, ""); gsub(/["\047]/, ""); user = $0; keys = 0; print "user " user; next }
  /ssh_authorized_keys:/ { keys = 1; next }
  keys && /^[[:space:]]*-[[:space:]]/ { sub(/^[[:space:]]*-[[:space:]]*/, ""); gsub(/^["\047]|["\047]$/, ""); print "key " user " " $0; next }
  /^[[:space:]]*[a-z_]+:/ { keys = 0 }
' "$seed/user-data" | while read -r kind user rest; do
  case "$kind" in
    user)
      id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
      home="$(getent passwd "$user" | cut -d: -f6)"
      install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
      : >"$home/.ssh/authorized_keys"
      chown "$user:$user" "$home/.ssh/authorized_keys"
      chmod 600 "$home/.ssh/authorized_keys"
      echo "kumo-nocloud: user $user"
      ;;
    key)
      home="$(getent passwd "$user" | cut -d: -f6)"
      echo "$rest" >>"$home/.ssh/authorized_keys"
      ;;
  esac
done
umount "$seed"
mkdir -p /var/lib/kumo-nocloud
[ -z "$id" ] || echo "$id" >/var/lib/kumo-nocloud/instance-id
echo "kumo-nocloud: done"
EOF
chmod 755 "$root/usr/local/sbin/kumo-nocloud"
cat >"$root/etc/systemd/system/kumo-nocloud.service" <<'EOF'
[Unit]
Description=Apply the NoCloud seed (host name, users, SSH keys)
DefaultDependencies=no
After=local-fs.target systemd-udev-settle.service
Wants=systemd-udev-settle.service
Before=ssh.service systemd-networkd.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kumo-nocloud
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/kumo-nocloud.service \
  "$root/etc/systemd/system/multi-user.target.wants/kumo-nocloud.service"
cat >"$root/etc/systemd/system/kumo-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Make SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/kumo-ssh-hostkeys.service \
  "$root/etc/systemd/system/multi-user.target.wants/kumo-ssh-hostkeys.service"
# Fast boot under TCG: nothing waits for the network to be "online", no timers.
rm -f "$root"/etc/systemd/system/timers.target.wants/*
ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
chroot "$root" passwd -l root >/dev/null
# Small: no package lists, docs, man pages or locales.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*

# --- the disk ---
kernel="$(ls "$root"/boot/vmlinuz-* | head -n1)"
initrd="$(ls "$root"/boot/initrd.img-* | head -n1)"
boot_mib=64
root_mib=1536
part1_start=2048
part1_sectors=$((boot_mib * 2048))
part2_start=$((part1_start + part1_sectors))
part2_sectors=$((root_mib * 2048))
total_sectors=$((part2_start + part2_sectors))

echo "vm-test-image: boot partition (syslinux)" >&2
boot="$work/boot.img"
mkfs.vfat -F 16 -n KUMOBOOT -h "$part1_start" -C "$boot" $((boot_mib * 1024)) >/dev/null
cat >"$work/syslinux.cfg" <<'EOF'
DEFAULT linux
TIMEOUT 0
PROMPT 0
SERIAL 0 115200
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=kumo-root ro console=tty0 console=ttyS0,115200n8 net.ifnames=0
EOF
export MTOOLS_SKIP_CHECK=1
mcopy -i "$boot" "$kernel" ::vmlinuz
mcopy -i "$boot" "$initrd" ::initrd.img
mcopy -i "$boot" "$work/syslinux.cfg" ::syslinux.cfg
syslinux --install "$boot"

echo "vm-test-image: root partition (ext4)" >&2
rootimg="$work/root.img"
mkfs.ext4 -q -L kumo-root -d "$root" "$rootimg" "${root_mib}M"

disk="$work/disk.raw"
truncate -s $((total_sectors * 512)) "$disk"
sfdisk -q "$disk" <<EOF
label: dos
start=$part1_start, size=$part1_sectors, type=6, bootable
start=$part2_start, size=$part2_sectors, type=83
EOF
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$boot" of="$disk" bs=512 seek="$part1_start" conv=notrunc,sparse status=none
dd if="$rootimg" of="$disk" bs=512 seek="$part2_start" conv=notrunc,sparse status=none

echo "vm-test-image: compressing" >&2
qemu-img convert -c -O qcow2 "$disk" "$work/image.qcow2"
mv "$work/image.qcow2" "$image"
echo "vm-test-image: $image ($(du -h "$image" | cut -f1)) built in $((SECONDS - start)) s" >&2
echo "$image"
