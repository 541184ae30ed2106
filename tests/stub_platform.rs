//! The stub platform (`src/sys/stub`, issue 16): on a target other than Linux, macOS and
//! Windows, each family of public calls fails with the stub's error and nothing panics. Built
//! only with the stub, forced on Linux by its cfg (as .ci/run does; `build.rs` turns it on):
//!
//! ```text
//! MULTIPROCESS_STUB_PLATFORM=1 cargo test --test stub_platform
//! ```
#![cfg(multiprocess_stub_platform)]

mod common;

use std::time::Duration;

use multiprocess::Error;

/// The error a public call gets on the stub platform.
fn unsupported<T: std::fmt::Debug>(result: multiprocess::Result<T>) {
    match result {
        Err(Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::Unsupported
                && source.to_string().contains("Linux, macOS and Windows") => {}
        other => panic!("not the stub's error: {other:?}"),
    }
}

fn double(x: u32) -> u32 {
    x * 2
}

#[test]
fn every_entry_point_fails_with_the_stubs_error() {
    multiprocess::init_test();
    let _g = common::start();
    unsupported(multiprocess::Process::new(double, (1,)).start());
    unsupported(multiprocess::pipe());
    unsupported(multiprocess::Lock::new());
    unsupported(multiprocess::Queue::<u32>::new());
    unsupported(multiprocess::SharedMemory::create(None, 64));
    unsupported(multiprocess::connection::Listener::bind(None, None));
    unsupported(multiprocess::Manager::start());
    unsupported(multiprocess::Pool::new(2));
    unsupported(multiprocess::wait(&[], Some(Duration::ZERO)));
}
