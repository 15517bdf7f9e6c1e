#!/usr/bin/env bash
# Builds the container images and starts the local registries that the Docker workload tests
# (crates/kumo-workload/tests/) use, without the internet. Idempotent: run it as often as you like.
#
#   kumo-test/busybox:1, kumo-test/busybox:2
#       `docker import` of a root filesystem made from the Debian busybox-static binary, with
#       every applet linked in /bin (sh, httpd, nc, wget, nslookup, ...), /www/index.html, and
#       /etc/kumo-test-image holding "1" or "2" so a test can tell the two images apart.
#   kumo-test/udp-echo:1
#       the busybox root filesystem plus /bin/udp-echo, a static UDP echo server built from
#       scripts/udp-echo.c (busybox's nc has no UDP mode), for the UDP forwarding test.
#   127.0.0.1:5000  registry without authentication, holding kumo-test/busybox:1 and :latest
#   127.0.0.1:5001  registry with basic authentication (user `kumo`, password
#                   `kumo-test-password`), holding kumo-test/private:1
#
# Needs a running Docker engine, a C compiler with a static libc (gcc and libc6-dev, which a
# Rust toolchain needs anyway) and the Debian packages docker-registry and busybox-static (or
# `apt-get download` access for the latter). Registry data and logs go to
# $KUMO_TEST_REGISTRY_DIR (default /var/tmp/kumo-test-registry).
set -euo pipefail

state_dir=${KUMO_TEST_REGISTRY_DIR:-/var/tmp/kumo-test-registry}
open_registry=127.0.0.1:5000
auth_registry=127.0.0.1:5001
auth_user=kumo
auth_password=kumo-test-password
# bcrypt (cost 6) of the password above; the registry reads only bcrypt htpasswd entries.
auth_htpasswd='kumo:$2b$06$aO9lOdjHXEe0bHqaS3Jic.Rt4jKQZzU4NBTJyAV4i/qir5FHd8QvS'
# Bump when the root filesystem below changes, so existing images get rebuilt.
layout_version=1

say() { printf 'test-images: %s\n' "$*"; }
die() { printf 'test-images: %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed): start dockerd first"
command -v docker-registry >/dev/null || die "docker-registry is missing: apt-get install docker-registry"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- busybox: the installed busybox-static binary, or the package downloaded (no root needed)
busybox=""
if dpkg -s busybox-static >/dev/null 2>&1; then
  busybox=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$' || true)
fi
if [ -z "$busybox" ]; then
  say "busybox-static is not installed: downloading the package"
  (cd "$work" && apt-get download busybox-static >/dev/null) || die "apt-get download busybox-static failed"
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/pkg"
  busybox="$work/pkg/bin/busybox"
fi
[ -x "$busybox" ] || die "no busybox binary found at '$busybox'"

fingerprint=$( { sha256sum "$busybox"; echo "layout $layout_version"; } | sha256sum | cut -c1-16)

# --- udp-echo: static, so it runs on the busybox root filesystem (no libc there)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cc=${CC:-cc}
command -v "$cc" >/dev/null || die "no C compiler ($cc): apt-get install gcc libc6-dev"
"$cc" -static -Os -o "$work/udp-echo" "$here/udp-echo.c" ||
  die "building udp-echo failed: a static libc is needed (apt-get install libc6-dev)"
udp_echo_fingerprint=$( { sha256sum "$here/udp-echo.c"; echo "$fingerprint"; } | sha256sum | cut -c1-16)

build_image() { # build_image TAG MARKER [EXTRA_BINARY]
  local tag=$1 marker=$2 extra=${3:-} have print=$fingerprint
  [ -z "$extra" ] || print=$udp_echo_fingerprint
  have=$(docker image inspect -f '{{index .Config.Labels "kumo.test-image"}}' "$tag" 2>/dev/null || true)
  if [ "$have" = "$print-$marker" ]; then
    say "$tag is up to date"
    return
  fi
  local root="$work/rootfs-$marker"
  mkdir -p "$root"/{bin,etc,tmp,www,root,var/run}
  chmod 1777 "$root/tmp"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  echo "kumo test page" >"$root/www/index.html"
  echo "$marker" >"$root/etc/kumo-test-image"
  [ -z "$extra" ] || cp "$extra" "$root/bin/"
  tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . |
    docker import \
      --change 'ENV PATH=/bin' \
      --change 'CMD ["/bin/sh"]' \
      --change "LABEL kumo.test-image=$print-$marker" \
      - "$tag" >/dev/null
  say "built $tag"
}

build_image kumo-test/busybox:1 1
build_image kumo-test/busybox:2 2
build_image kumo-test/udp-echo:1 udp-echo "$work/udp-echo"

# --- registries: one docker-registry process each, started unless it already answers
start_registry() { # start_registry NAME ADDR EXPECTED_HTTP_CODE [htpasswd line]
  local name=$1 addr=$2 expect=$3 htpasswd=${4:-} dir="$state_dir/$1" code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/v2/" || true)
  if [ "$code" = "$expect" ]; then
    say "registry $name is up on $addr"
    return
  fi
  [ "$code" = 000 ] || die "something else answers on $addr (HTTP $code): stop it or free the port"
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: info, accesslog: {disabled: false}}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: $addr}"
    if [ -n "$htpasswd" ]; then
      echo "$htpasswd" >"$dir/htpasswd"
      echo "auth: {htpasswd: {realm: kumo-test, path: $dir/htpasswd}}"
    fi
  } >"$dir/config.yml"
  setsid nohup docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null &
  for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/v2/" || true)
    if [ "$code" = "$expect" ]; then
      say "started registry $name on $addr (log: $dir/registry.log)"
      return
    fi
    sleep 0.2
  done
  die "registry $name did not come up on $addr: see $dir/registry.log"
}

start_registry open "$open_registry" 200
start_registry auth "$auth_registry" 401 "$auth_htpasswd"

push() { # push LOCAL_TAG REMOTE_TAG [docker config dir]
  docker tag "$1" "$2"
  if [ -n "${3:-}" ]; then
    docker --config "$3" push -q "$2" >/dev/null
  else
    docker push -q "$2" >/dev/null
  fi
  say "pushed $2"
}

push kumo-test/busybox:1 "$open_registry/kumo-test/busybox:1"
push kumo-test/busybox:1 "$open_registry/kumo-test/busybox:latest"

# A throwaway client config, so the login does not land in the user's ~/.docker.
mkdir -p "$work/docker-config"
echo "$auth_password" | docker --config "$work/docker-config" login -u "$auth_user" --password-stdin "$auth_registry" >/dev/null 2>"$work/login.err" ||
  die "docker login to $auth_registry failed: $(cat "$work/login.err")"
push kumo-test/busybox:1 "$auth_registry/kumo-test/private:1" "$work/docker-config"
# The private image must come from the registry in the tests, never from the local cache.
docker image rm "$auth_registry/kumo-test/private:1" >/dev/null 2>&1 || true

say "done"
