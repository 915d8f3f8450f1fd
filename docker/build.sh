#!/usr/bin/env bash
# Builds the executor and driver images without any registry: each image is
# `FROM scratch` over a root filesystem assembled here from the release
# binaries, the shared libraries `ldd` says they need, the host's CA bundle,
# a passwd entry for the non-root user and a sticky /tmp.
#
#   docker/build.sh [--tag TAG] [--bin-dir DIR] [--only executor|driver]
#
# --bin-dir uses binaries already built there (default: cargo build --release).
# Images: chainbatch-executor:TAG and chainbatch-driver:TAG (TAG defaults to
# the workspace version). Push them to ECR with docker tag + docker push.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
bin_dir=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v docker >/dev/null || { echo "build.sh: docker is not installed" >&2; exit 1; }
# Images hold this machine's binaries and libraries, so they are for its
# architecture: build on an arm64 host (Graviton) for ARM64 and set
# terraform's cpu_architecture to match.
case "$(uname -m)" in
  x86_64) platform=linux/amd64 ;;
  aarch64|arm64) platform=linux/arm64 ;;
  *) echo "build.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

if [ -z "$bin_dir" ]; then
  cargo build --release -p chainbatch-executor -p chainbatch
  bin_dir="${CARGO_TARGET_DIR:-target}/release"
fi

ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || { echo "build.sh: $ca_bundle is missing (apt-get install ca-certificates)" >&2; exit 1; }

# rootfs DIR BINARY: the binary, its libraries, certificates, user, /tmp.
rootfs() {
  local root="$1" binary="$2"
  mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/app"
  chmod 1777 "$root/tmp"
  install -m 0755 "$binary" "$root/usr/local/bin/"
  # Strip debug sections from the copy: the image needs none of them.
  objcopy --strip-debug "$root/usr/local/bin/$(basename "$binary")" 2>/dev/null || true
  ldd "$binary" | awk '/=> \// { print $3 } /^[ \t]*\// { print $1 }' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  cp -L "$ca_bundle" "$root/etc/ssl/certs/"
  echo "chainbatch:x:65532:65532:chainbatch:/tmp:/sbin/nologin" > "$root/etc/passwd"
  echo "chainbatch:x:65532:" > "$root/etc/group"
}

work="$(mktemp -d -t chainbatch-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT

if [ "$only" != "driver" ]; then
  mkdir -p "$work/executor"
  rootfs "$work/executor/rootfs" "$bin_dir/chainbatch-executor"
  docker build --quiet --platform "$platform" -f docker/executor.Dockerfile -t "chainbatch-executor:$tag" "$work/executor" >/dev/null
  echo "built chainbatch-executor:$tag for $platform ($(docker image inspect -f '{{.Size}}' "chainbatch-executor:$tag") bytes)"
fi
if [ "$only" != "executor" ]; then
  mkdir -p "$work/driver"
  rootfs "$work/driver/rootfs" "$bin_dir/chainbatch"
  cp -r conf "$work/driver/rootfs/app/conf"
  docker build --quiet --platform "$platform" -f docker/driver.Dockerfile -t "chainbatch-driver:$tag" "$work/driver" >/dev/null
  echo "built chainbatch-driver:$tag for $platform ($(docker image inspect -f '{{.Size}}' "chainbatch-driver:$tag") bytes)"
fi
