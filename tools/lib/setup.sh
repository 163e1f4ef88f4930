# tools/lib/setup.sh - sourced by tools/check and tools/demo: installs what
# is missing (Debian packages) and builds into build/. Idempotent.

# Everything clattn needs to build, test and run on Debian 12.
CLATTN_PACKAGES=(
  gcc libc6-dev python3 meson ninja-build pkg-config
  ocl-icd-opencl-dev opencl-headers ocl-icd-libopencl1 libclblast-dev
  pocl-opencl-icd mesa-opencl-icd oclgrind
  libjansson-dev libutf8proc-dev libcairo2-dev libmicrohttpd-dev curl
  clang libclang-rt-14-dev
)

# Installs the missing packages, or prints the exact command to run when it
# cannot (not root, or apt-get failed). Returns non-zero if anything is
# still missing.
clattn_install_packages() {
  local missing=() p
  for p in "${CLATTN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local cmd="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "clattn: missing packages; run as root:" >&2
    echo "  apt-get update && $cmd" >&2
    return 1
  fi
  echo "clattn: installing ${missing[*]}" >&2
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $cmd -qq; } >&2; then
    echo "clattn: package installation failed; run as root:" >&2
    echo "  apt-get update && $cmd" >&2
    return 1
  fi
}

# Configures (once) and builds build/. Honours CLATTN_BUILD_DIR.
clattn_build() {
  local dir=${CLATTN_BUILD_DIR:-build}
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" >&2 || return 1
  fi
  meson compile -C "$dir" >&2
}
