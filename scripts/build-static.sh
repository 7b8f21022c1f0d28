#!/usr/bin/env bash
# Builds caso-extract and ssmsend as static, stripped release binaries into
# dist/, for the FROM-scratch images (Dockerfile.*, target "offline") and for
# copying onto hosts with any libc. Then checks that they really are static:
# no program interpreter and no shared library needed.
#
# Target choice, for the machine's own architecture (uname -m): ARCH-unknown-
# linux-musl when that Rust target is installed (OpenSSL is then built from
# source by the vendored-openssl feature, which needs a musl C compiler:
# musl-tools on Debian, native on Alpine); otherwise ARCH-unknown-linux-gnu
# with crt-static, linking Debian's libssl.a/libcrypto.a (package libssl-dev).
# Naming --target explicitly keeps build scripts and proc-macros dynamic: only
# the final programs are linked statically.
#
# Usage: scripts/build-static.sh [--bin NAME]... [--example NAME]...
# Without --bin, both programs. Each --example is built the same way and left
# in TARGET_DIR/TRIPLE/release/examples/ (scripts/test-images.sh builds its
# probe so), not in dist/.
# Environment: STATIC_TARGET=gnu|musl forces a choice; CARGO_TARGET_DIR is
# honoured. Output: dist/caso-extract, dist/ssmsend, dist/TARGET (the triple),
# dist/ca-certificates.crt (this machine's CA bundle, for the offline images).
set -euo pipefail
cd "$(dirname "$0")/.."

bins=()
examples=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bins+=("${2:?--bin needs a name}"); shift 2 ;;
    --example) examples+=("${2:?--example needs a name}"); shift 2 ;;
    *) echo "usage: $0 [--bin NAME]... [--example NAME]..." >&2; exit 2 ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || bins=(caso-extract ssmsend)
ca_bundle=/etc/ssl/certs/ca-certificates.crt
arch=$(uname -m)
musl=$arch-unknown-linux-musl
gnu=$arch-unknown-linux-gnu
ssl_libdir=/usr/lib/$arch-linux-gnu

musl_installed() {
  rustup target list --installed 2>/dev/null | grep -qx "$musl"
}

choice=${STATIC_TARGET:-}
if [ -z "$choice" ]; then
  if musl_installed; then choice=musl; else choice=gnu; fi
fi

build_args=(build --release --locked)
for b in "${bins[@]}"; do build_args+=(--bin "$b"); done
for e in "${examples[@]}"; do build_args+=(--example "$e"); done

case "$choice" in
  musl)
    target=$musl
    echo "build-static: building for $target with vendored OpenSSL" >&2
    cargo "${build_args[@]}" --target "$target" --features vendored-openssl
    ;;
  gnu)
    target=$gnu
    if [ ! -f "$ssl_libdir/libssl.a" ]; then
      echo "build-static: $ssl_libdir/libssl.a is missing: install libssl-dev (or the musl target: rustup target add $musl)" >&2
      exit 1
    fi
    echo "build-static: $musl is not installed; building for $target with crt-static and Debian's static OpenSSL" >&2
    # Only the target gets +crt-static (RUSTFLAGS applies to target crates
    # when --target is given). OpenSSL's static archives come from libssl-dev.
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
      OPENSSL_STATIC=1 \
      OPENSSL_LIB_DIR="$ssl_libdir" \
      OPENSSL_INCLUDE_DIR=/usr/include \
      cargo "${build_args[@]}" --target "$target"
    ;;
  *)
    echo "build-static: STATIC_TARGET must be gnu or musl, not '$choice'" >&2
    exit 2
    ;;
esac

out=${CARGO_TARGET_DIR:-target}/$target/release
mkdir -p dist
for b in "${bins[@]}"; do
  install -m 0755 "$out/$b" "dist/$b"
done
echo "$target" > dist/TARGET
# The images need a CA bundle for TLS to Keystone and AMS; the offline build
# context cannot reach /etc, so it travels in dist/ (Debian/Alpine path).
if [ -s "$ca_bundle" ]; then
  install -m 0644 "$ca_bundle" dist/ca-certificates.crt
else
  echo "build-static: warning: $ca_bundle is missing (install ca-certificates); the offline images need it" >&2
fi

# The static check: a dynamically linked program has a PT_INTERP program header
# (the loader) and DT_NEEDED entries (its shared libraries). A static-pie has a
# dynamic section for its own relocations, but neither of those.
status=0
files=()
for b in "${bins[@]}"; do files+=("dist/$b"); done
for e in "${examples[@]}"; do files+=("$out/examples/$e"); done
for f in "${files[@]}"; do
  if readelf --program-headers --wide "$f" | grep -q 'INTERP'; then
    echo "build-static: $f has a program interpreter: it is not static" >&2
    status=1
  fi
  if readelf --dynamic --wide "$f" | grep -q '(NEEDED)'; then
    echo "build-static: $f needs shared libraries:" >&2
    readelf --dynamic --wide "$f" | grep '(NEEDED)' >&2
    status=1
  fi
  if readelf --section-headers --wide "$f" | grep -q '\.symtab'; then
    echo "build-static: $f is not stripped (it has a .symtab)" >&2
    status=1
  fi
  printf 'build-static: %s: %s bytes, static, stripped (%s)\n' "$f" "$(stat -c %s "$f")" "$target" >&2
done
exit "$status"
