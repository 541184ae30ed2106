//! The shape of `src/`: its modules import only downwards, in the order `src/README.md` writes
//! down. Read from the source text (`crate::` paths outside comments), so a new import that runs
//! upwards fails here, in every `cargo test`.

// Read on the Linux stage; the Windows stage runs under Wine, where the build machine's paths
// do not hold.
#![cfg(not(windows))]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules of `src/` from the ground up; a module may use those on its floor and below.
const FLOORS: &[&[&str]] = &[
    &["error", "log"],
    &["sys"],
    &["wire", "panics"],
    &["synchronize", "shared_memory", "sharedctypes"],
    &["queues"],
    &["registry"],
    &["process", "context"],
    &["connection"],
    &["forkserver", "pool"],
    &["managers", "executor"],
    &["bootstrap", "lib"],
];

/// Imports that still run upwards (file, module it uses), each to be taken away. The test fails
/// if one of them is gone too, so this list only shrinks.
const NOT_YET: &[(&str, &str)] = &[];

fn floor(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `.rs` file of `src/`: its path there (with `/`) and its text.
fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .iter()
        .map(|file| {
            let rel = file.strip_prefix(&src).unwrap().to_string_lossy();
            (
                rel.replace('\\', "/"),
                std::fs::read_to_string(file).unwrap(),
            )
        })
        .collect()
}

/// The first segment of every `crate::` path in `code`, `crate::{a, b::c}` giving `a` and `b`.
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, nested groups skipped.
            let mut depth = 0;
            let mut item_start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.push(ident(&group[item_start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(ident(&group[item_start..i]));
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|s| !s.is_empty());
    found
}

#[test]
fn imports_run_downwards() {
    let mut upwards = BTreeSet::new();
    for (rel, text) in sources() {
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs");
        let Some(mine) = floor(top) else {
            panic!("src/{rel}: module `{top}` is on no floor of FLOORS (and src/README.md)");
        };
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for used in crate_paths(&code) {
            if floor(&used).is_some_and(|theirs| theirs > mine) {
                upwards.insert((rel.clone(), used));
            }
        }
    }
    let known = NOT_YET
        .iter()
        .map(|(f, m)| (f.to_string(), m.to_string()))
        .collect();
    exactly_the_known(
        &upwards,
        &known,
        "imports that run upwards (see src/README.md for the order)",
        "NOT_YET",
    );
}

/// Fails on a finding not in `known` (new), and on a `known` one no longer found (the list
/// named `list` must shrink with the code).
fn exactly_the_known<T: Ord + std::fmt::Debug>(
    found: &BTreeSet<T>,
    known: &BTreeSet<T>,
    what: &str,
    list: &str,
) {
    let new: Vec<_> = found.difference(known).collect();
    assert!(new.is_empty(), "{what}: {new:?}");
    let gone: Vec<_> = known.difference(found).collect();
    assert!(
        gone.is_empty(),
        "no longer so, take them out of {list}: {gone:?}"
    );
}

/// The most lines of code (doc comments, comments, blank lines and a trailing test module
/// left out) a file of `src/` may hold.
const MOST_LINES: usize = 600;

/// Files still above [`MOST_LINES`], each to be split (issue 16); the test fails when one of
/// them falls under it too, so this list only shrinks.
const STILL_LARGE: &[&str] = &[];

fn code_lines(text: &str) -> usize {
    let code = text
        .split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or(text);
    code.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

#[test]
fn files_are_small() {
    let mut large = BTreeSet::new();
    for (rel, text) in sources() {
        // Test modules of their own (`tests.rs`, `*_tests.rs`) are tests, not code.
        if rel.ends_with("tests.rs") {
            continue;
        }
        let n = code_lines(&text);
        if n > MOST_LINES {
            large.insert(rel);
        }
    }
    let known = STILL_LARGE.iter().map(|f| f.to_string()).collect();
    exactly_the_known(
        &large,
        &known,
        &format!("files over {MOST_LINES} lines of code"),
        "STILL_LARGE",
    );
}

/// Where `unsafe` code may stand: the modules that own the OS and shared memory. The crate
/// denies `unsafe_code` elsewhere, but `sys::forked_child_code!` and `forked_child_data!`
/// allow it on the items they wrap (a section's name is an `unsafe` attribute): this keeps
/// `unsafe` blocks, functions and impls out of those items' bodies too.
const UNSAFE_HOMES: &[&str] = &["sys/", "queues/", "shared_memory/", "sharedctypes.rs"];

#[test]
fn unsafe_code_stays_home() {
    let mut found = BTreeSet::new();
    for (rel, text) in sources() {
        if UNSAFE_HOMES.iter().any(|home| rel.starts_with(home)) {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let words = code.split(|c: char| !(c.is_alphanumeric() || c == '_'));
            if words.into_iter().any(|w| w == "unsafe") {
                found.insert(format!("{rel}:{}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "`unsafe` outside {UNSAFE_HOMES:?}: {found:?}"
    );
}

#[test]
fn the_parser_sees_groups_and_paths() {
    assert_eq!(
        crate_paths("use crate::{sys::{self, Region}, wire};\nlet x = crate::queues::Ring::new();"),
        ["sys", "wire", "queues"]
    );
}
