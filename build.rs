//! The crate's one build-time switch: `MULTIPROCESS_STUB_PLATFORM=1` builds the stub platform
//! (`src/sys/stub`) on any target, so that Linux can prove the stub still provides every name
//! the crate uses (`.ci/run` lints it and runs `tests/stub_platform.rs` with it). Through this
//! script the cfg reaches this package alone: `RUSTFLAGS="--cfg multiprocess_stub_platform"`,
//! which works too, rebuilds every dependency as well.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(multiprocess_stub_platform)");
    println!("cargo::rerun-if-env-changed=MULTIPROCESS_STUB_PLATFORM");
    if std::env::var_os("MULTIPROCESS_STUB_PLATFORM").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=multiprocess_stub_platform");
    }
}
