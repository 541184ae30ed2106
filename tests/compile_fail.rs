//! What the compiler tells a user who makes the common mistakes with targets (issue 17, items 2
//! and 5): each case in `tests/compile_fail/` must fail to build with the message in its
//! `.stderr` file. After changing a message (or the lines of a signature it quotes), regenerate
//! them with `TRYBUILD=overwrite cargo test --test compile_fail` and read the diff.
//!
//! A closure capturing only `Copy` values fails later, at `cargo build` (rustc cannot tell a
//! closure's size at `cargo check`): trybuild builds the cases rather than checks them because
//! the batch has a `pass` case, so `capture_copy` sees that error too.
//!
//! Linux only: the messages quote paths and lines as rustc prints them there, and CI runs the
//! Windows tests under Wine, where building a crate again would take long for nothing.

#[cfg(target_os = "linux")]
#[test]
fn target_mistakes_say_what_to_do() {
    let t = trybuild::TestCases::new();
    // Moves a `String` into a closure: refused at `cargo check` as "not a target", with the fix.
    t.compile_fail("tests/compile_fail/capture_string.rs");
    // A `&str` parameter: "Deserialize is not general enough" (README: use `String`).
    t.compile_fail("tests/compile_fail/borrowed_str.rs");
    // Arguments that do not fit the parameters.
    t.compile_fail("tests/compile_fail/wrong_args.rs");
    // Captures a `Copy` value: refused at `cargo build`, pointing at the call, with the fix.
    t.compile_fail("tests/compile_fail/capture_copy.rs");
    // The progress bar without its cargo feature: says to turn the feature on.
    #[cfg(not(feature = "progress"))]
    t.compile_fail("tests/compile_fail/progress_without_feature.rs");
    // The right way builds and runs (and makes trybuild build every case, not only check it).
    t.pass("tests/compile_fail/target_ok.rs");
}
