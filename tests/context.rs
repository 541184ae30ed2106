//! Context cases C01–C02 of python-reference.md §2.3: which start methods exist, the default,
//! and Python's rules for fixing and inheriting it.

mod common;

use multiprocess::{
    Error, Process, StartMethod, default_context, get_all_start_methods, get_context,
    get_start_method, get_start_method_allow_none, set_start_method, set_start_method_force,
};

fn method_seen_by_child() -> Option<StartMethod> {
    get_start_method_allow_none()
}

#[cfg(unix)]
fn grandchild_method() -> Option<StartMethod> {
    let mut p = Process::new(method_seen_by_child, ());
    p.start().unwrap();
    p.result().unwrap()
}

/// C01: spawn, fork and forkserver on Unix, only spawn on Windows; spawn the documented
/// default.
#[test]
fn c01_start_methods() {
    multiprocess::init_test();
    let _g = common::start();
    if cfg!(unix) {
        assert_eq!(
            get_all_start_methods(),
            vec![
                StartMethod::Spawn,
                StartMethod::Fork,
                StartMethod::Forkserver
            ]
        );
        assert_eq!(
            get_context(multiprocess::StartMethod::Fork)
                .unwrap()
                .start_method(),
            StartMethod::Fork
        );
        assert_eq!(
            get_context(multiprocess::StartMethod::Forkserver)
                .unwrap()
                .start_method(),
            StartMethod::Forkserver
        );
    } else {
        assert_eq!(get_all_start_methods(), vec![StartMethod::Spawn]);
        match get_context(multiprocess::StartMethod::Fork) {
            Err(Error::InvalidArgument(m)) => assert_eq!(m, "cannot find context for \"fork\""),
            other => panic!("{other:?}"),
        }
        assert!(set_start_method_force(Some(multiprocess::StartMethod::Fork)).is_err());
        assert!(get_context(multiprocess::StartMethod::Forkserver).is_err());
        assert!(multiprocess::forkserver::ensure_running().is_err());
    }
    match "bogus".parse::<StartMethod>() {
        Err(Error::InvalidArgument(m)) => assert_eq!(m, "cannot find context for \"bogus\""),
        other => panic!("{other:?}"),
    }
}

/// C02: the default is fixed by first use, changed only with force; a child's default is the
/// method that started it, so its own children are started the same way.
#[test]
fn c02_method_fixed_once_and_inherited() {
    multiprocess::init_test();
    let _g = common::start();
    set_start_method_force(None).unwrap();
    assert_eq!(get_start_method_allow_none(), None);
    set_start_method(multiprocess::StartMethod::Spawn).unwrap();
    let mut p = Process::new(method_seen_by_child, ());
    p.start().unwrap();
    assert_eq!(
        p.result::<Option<StartMethod>>().unwrap(),
        Some(StartMethod::Spawn)
    );
    // Another method where there is one (fork on Unix), else the same one: refused either way.
    let other = if cfg!(unix) {
        StartMethod::Fork
    } else {
        StartMethod::Spawn
    };
    assert_eq!(
        set_start_method(other).unwrap_err().to_string(),
        "context has already been set"
    );
    assert_eq!(
        get_start_method(),
        StartMethod::Spawn,
        "a failed set changes nothing"
    );
    #[cfg(unix)]
    fork_default_is_inherited();
    set_start_method_force(None).unwrap();
    // A closure needs fork: with spawn it is refused at start, not in the child.
    let mut c = get_context(multiprocess::StartMethod::Spawn)
        .unwrap()
        .process_closure(|| 1u8);
    assert!(matches!(c.start(), Err(Error::InvalidArgument(_))));
    // Python's get_context() without a method (issue 17, item 13): the default's context,
    // which fixes the default as a first use does.
    set_start_method_force(None).unwrap();
    let ctx = default_context();
    assert_eq!(ctx.start_method(), StartMethod::Spawn);
    assert_eq!(get_start_method_allow_none(), Some(StartMethod::Spawn));
    let mut d = ctx.process(method_seen_by_child, ());
    d.start().unwrap();
    assert_eq!(
        d.result::<Option<StartMethod>>().unwrap(),
        Some(StartMethod::Spawn)
    );
    set_start_method_force(None).unwrap();
}

/// Forced to fork: processes made without a context now fork, and a forked child's children
/// too.
#[cfg(unix)]
fn fork_default_is_inherited() {
    set_start_method_force(Some(multiprocess::StartMethod::Fork)).unwrap();
    let mut f = Process::new(grandchild_method, ());
    f.start().unwrap();
    assert_eq!(
        f.result::<Option<StartMethod>>().unwrap(),
        Some(StartMethod::Fork)
    );
    // A spawn context inside a fork default: its child, and that child's children, use spawn.
    let mut s = get_context(multiprocess::StartMethod::Spawn)
        .unwrap()
        .process(grandchild_method, ());
    s.start().unwrap();
    assert_eq!(
        s.result::<Option<StartMethod>>().unwrap(),
        Some(StartMethod::Spawn)
    );
}
