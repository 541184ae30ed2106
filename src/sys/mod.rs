//! The only place with OS-specific code. Public modules call the platform-neutral surface
//! re-exported here; each submodule implements it for one family of systems:
//!
//! - [`image`] (every OS): code addresses that mean the same thing in every process running this
//!   executable, and the executable's identity.
//! - `unix`: spawn by re-executing the program, fork, process handles, waits, signals.
//! - `linux` / `macos`: what differs between Unixes (process sentinels, the main image, build ids).
//! - `windows`: spawn with `CreateProcessW` and an explicit handle list, process handles as
//!   sentinels, overlapped named pipes as channels, the main module from the loader.

pub(crate) mod image;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;
#[cfg(windows)]
pub(crate) use windows::*;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
compile_error!("multiprocess supports Linux, macOS and Windows");
