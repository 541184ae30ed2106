# shellcheck shell=bash
# Source from CI (bash, root, Debian bookworm, rustup toolchain):  source windows-env.sh
# Installs mingw-w64 + wine64, fetches the std source matching `rustc -V`, exports the env
# for `cargo {check,build,test,nextest run,clippy} --target x86_64-pc-windows-gnu`.
xwin_setup() {
  local XDIR=${XDIR:-$PWD/target/xwin} RUSTV SRC A VER
  mkdir -p "$XDIR" || return 1
  RUSTV=$(rustc -V | awk '{print $2}')     # e.g. 1.95.0

  # 1. mingw-w64 (linker, dlltool) and wine64, from Debian bookworm main
  local need=()
  command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
  [ -x /usr/lib/wine/wine64 ] || need+=(wine64)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || return 1
  fi

  # 2. std source for exactly this rustc: Debian's arch-all rust-src from trixie-backports,
  #    fetched with a private apt config (the system's apt sources are not touched).
  SRC="$XDIR/rust-src-$RUSTV"
  if [ ! -f "$SRC/library/Cargo.lock" ] && [ -f "${XWIN_LIBRARY_TARBALL:-}" ]; then
    # fallback/offline copy: a tar.xz holding library/ of the same version
    mkdir -p "$SRC" && tar -xJf "$XWIN_LIBRARY_TARBALL" -C "$SRC" || return 1
  fi
  if [ ! -f "$SRC/library/Cargo.lock" ]; then
    A="$XDIR/apt"; mkdir -p "$A/parts" "$A/lists/partial" "$A/cache/archives/partial"
    printf '%s\n' 'Types: deb' "URIs: $(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)" 'Suites: trixie-backports' \
      'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > "$A/parts/tbpo.sources"
    local O=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$A/parts"
             -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache" -o APT::Sandbox::User=root)
    apt-get "${O[@]}" update -qq || return 1
    VER=$(apt-cache "${O[@]}" madison rust-src | awk -v v="$RUSTV" '$3 ~ "^"v"\\+" {print $3; exit}')
    [ -n "$VER" ] || { echo "xwin: Debian has no rust-src for rustc $RUSTV" >&2; return 1; }
    (cd "$A" && apt-get "${O[@]}" download "rust-src=$VER" >/dev/null) || return 1
    rm -rf "$XDIR/x" && mkdir -p "$XDIR/x" "$SRC" || return 1
    dpkg-deb --fsys-tarfile "$A"/rust-src_*.deb | tar -x -C "$XDIR/x" "./usr/src/rustc-$RUSTV/library" || return 1
    mv "$XDIR/x/usr/src/rustc-$RUSTV/library" "$SRC/" && rm -rf "$XDIR/x" "$A"/rust-src_*.deb
  fi
  export __CARGO_TESTS_ONLY_SRC_ROOT="$SRC/library"   # where -Zbuild-std finds library/
  export RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort

  # 3. linker and test runner for x86_64-pc-windows-gnu
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64
  export WINEPREFIX="$XDIR/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="

  # 4. Wine 8.0 has no bcryptprimitives.dll (ProcessPrng), which Rust std >= 1.78 imports.
  local DLL="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
  if [ ! -f "$DLL" ]; then
    /usr/lib/wine/wine64 wineboot --init </dev/null >/dev/null 2>&1
    printf '%s\n' '#include <windows.h>' '#include <bcrypt.h>' \
      '__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n) {' \
      '  while (n) { ULONG c = n > 0x7fffffff ? 0x7fffffff : (ULONG)n;' \
      '    if (BCryptGenRandom(NULL, p, c, BCRYPT_USE_SYSTEM_PREFERRED_RNG)) return FALSE;' \
      '    p += c; n -= c; }' '  return TRUE; }' > "$XDIR/bcp.c"
    x86_64-w64-mingw32-gcc -O2 -shared -o "$DLL" "$XDIR/bcp.c" -lbcrypt || return 1
  fi
  # 5. one persistent wineserver (+ its services) detached from our stdio, so runners that
  #    wait for pipe EOF (nextest) neither hang nor report LEAK.
  /usr/lib/wine/wineserver -k >/dev/null 2>&1
  /usr/lib/wine/wineserver -p </dev/null >/dev/null 2>&1
  /usr/lib/wine/wine64 wineboot </dev/null >/dev/null 2>&1
  return 0
}
xwin_setup
