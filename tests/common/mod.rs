//! Shared test helpers: serialisation of process tests and the leak check every test ends with.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Held by every test that starts processes: they run one at a time, so that counting this
/// process's descriptors and children before and after a test is meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

/// What a test started with; checked when it ends.
pub struct Guard {
    resources: os::Resources,
    _lock: MutexGuard<'static, ()>,
}

/// Like [`start`], for a test that uses sockets: first uses them on this thread the way the
/// library does (a TCP `Listener`, `client`, a message each way), because Winsock (Wine's at
/// least) leaves handles of its own open for the life of a process or thread after their
/// first use (Windows; nothing on Unix).
pub fn start_with_sockets() -> Guard {
    start_with(warm_sockets)
}

/// Uses sockets as the library does (see [`start_with_sockets`]).
pub fn warm_sockets() {
    #[cfg(windows)]
    {
        use multiprocess::connection::{Address, Listener, client};
        let warm = || -> multiprocess::Result<()> {
            let l = Listener::bind(Some(Address::Tcp("127.0.0.1:0".parse().unwrap())), None)?;
            let c = client(l.address(), None)?;
            let s = l.accept()?;
            c.send_bytes(b"ping")?;
            s.recv_bytes()?;
            s.send_bytes(b"pong")?;
            c.recv_bytes().map(drop)
        };
        let _ = warm();
    }
}

/// Starts a leak-checked test: `let _g = common::start();` right after
/// `multiprocess::init_test()`.
///
/// On Linux the test process becomes a child subreaper, so anything our children leave behind
/// (orphaned grandchildren) is reparented to us and shows up in the end-of-test check.
pub fn start() -> Guard {
    start_with(|| {})
}

/// Runs a test's body under a leak-checked guard ([`start`]; call
/// `multiprocess::init_test()` first). An error the body returns fails the test with that
/// error *before* the leak check: with `let _g = common::start();` and `?`, an early error
/// return drops the test's objects with their children still unjoined, the guard then fails on
/// their descriptors, and the error itself is never printed.
pub fn run<E: std::fmt::Debug>(body: impl FnOnce() -> Result<(), E>) {
    let _g = start();
    if let Err(e) = body() {
        panic!("the test's body returned an error: {e:?}");
    }
}

/// Like [`start`], running `prepare` first, once the test has the machine to itself (tests
/// run one at a time from here on) and before the resources it leaves are counted.
pub fn start_with(prepare: impl FnOnce()) -> Guard {
    let lock = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // std symbolises a backtrace (a panic's, with RUST_BACKTRACE set) once per process and
    // keeps the files it read open from then on (on Windows they are counted as handles): do
    // it before counting, so that a test whose code panics on purpose is not blamed for them.
    #[cfg(windows)]
    {
        static SYMBOLISED: std::sync::Once = std::sync::Once::new();
        SYMBOLISED.call_once(|| {
            let _ = std::backtrace::Backtrace::force_capture().to_string();
        });
        keep_a_pool_wait_thread();
    }
    prepare();
    os::adopt_orphans();
    Guard {
        resources: os::Resources::now(),
        _lock: lock,
    }
}

/// Registers, once per process, a wait that never ends with the OS thread pool. The async
/// waits (feature `tokio`) go through the pool's wait threads, which the pool starts with
/// handles of their own at the first wait and ends (Wine: some 5 s) after the last: without
/// this, a test's async waits would leave those handles behind until then, and the leak check
/// would wait for them. With it, one wait thread lives for the process, made before counting.
#[cfg(windows)]
fn keep_a_pool_wait_thread() {
    use windows_sys::Win32::System::Threading::{
        CreateEventW, INFINITE, RegisterWaitForSingleObject,
    };
    static KEPT: std::sync::Once = std::sync::Once::new();
    unsafe extern "system" fn never(_: *mut std::ffi::c_void, _: bool) {}
    KEPT.call_once(|| {
        // SAFETY: a new unnamed, unsignalled manual-reset event, and a wait on it, both kept
        // for the process's life (never closed nor unregistered).
        unsafe {
            let event = CreateEventW(std::ptr::null(), 1, 0, std::ptr::null());
            let mut wait = std::ptr::null_mut();
            RegisterWaitForSingleObject(
                &mut wait,
                event,
                Some(never),
                std::ptr::null(),
                INFINITE,
                0,
            );
        }
    });
}

impl Drop for Guard {
    /// Checks that no child, zombie, orphan or descriptor (handle, on Windows) is left (waiting a
    /// little for processes that are already ending); kills and reaps leftovers before failing.
    /// Declared first in a test, the guard is dropped last, after the test's `Process` values.
    fn drop(&mut self) {
        // The shared-memory resource tracker (Unix) lives as long as the test binary: its
        // process and the pipe end we hold for it are not leaks.
        let tracker = multiprocess::shared_memory::resource_tracker_process();
        // The fork server too (tests that use it start it before the guard counts), but its
        // children are ours.
        let server = multiprocess::forkserver::server_pid();
        let children = || {
            let mut c = children_of_self();
            c.retain(|&(pid, _)| tracker.is_none_or(|(t, _)| t != pid) && Some(pid) != server);
            c.extend(server.map(children_of).unwrap_or_default());
            c
        };
        let leaked_now = |r: &os::Resources| {
            let mut l = r.leaked();
            l.retain(|d| {
                tracker.is_none_or(|(_, fd)| d.split(' ').next() != Some(&*fd.to_string()))
            });
            // The fork start method keeps one descriptor of the null device for its children's
            // stdin, opened at the first fork (sys::unix::prepare_null): not a leak.
            let nulls = l.iter().filter(|d| d.ends_with(" -> /dev/null")).count();
            if nulls == 1 {
                l.retain(|d| !d.ends_with(" -> /dev/null"));
            }
            l
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = children();
        while !left.is_empty() && Instant::now() < deadline && !std::thread::panicking() {
            std::thread::sleep(Duration::from_millis(20));
            left = children();
        }
        // Children that ended but were never joined (zombies on Unix; on Windows their
        // handles stay open, see below): the usual cause is a test that returned an error
        // early, which is then never printed (see `run`).
        const EARLY: &str = " (children that ended unjoined: did the test return an error \
                             early? common::run shows it)";
        let unjoined = !left.is_empty() && left.iter().all(|&(_, s)| s == 'Z');
        // What each runs, read before it is killed.
        let programs: Vec<String> = left
            .iter()
            .map(|&(pid, state)| format!("{pid} {state} {:?}", os::program(pid)))
            .collect();
        for &(pid, _) in &left {
            kill_and_reap(pid);
        }
        if std::thread::panicking() {
            return;
        }
        assert!(
            left.is_empty(),
            "processes left behind (pid, state, program): {programs:?}{}",
            if unjoined { EARLY } else { "" }
        );
        // Give handles that are being closed a moment (Wine closes some asynchronously, and a
        // pool's reader thread may still be dropping a replaced worker's channel on a loaded
        // machine); a real leak stays.
        let mut leaked = leaked_now(&self.resources);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !leaked.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            leaked = leaked_now(&self.resources);
        }
        if !leaked.is_empty() {
            // Children started and never joined hold their handles until the next start or
            // `active_children()` reaps them.
            let running: Vec<_> = multiprocess::active_children()
                .iter()
                .map(|p| format!("{} (pid {:?})", p.name(), p.pid()))
                .collect();
            let hint = if leaked_now(&self.resources).is_empty() {
                EARLY.to_string()
            } else if running.is_empty() {
                String::new()
            } else {
                format!(" (children still running: {running:?})")
            };
            panic!("descriptors leaked: {leaked:?}{hint}");
        }
    }
}

/// True if `pid` exists and has not ended (on Unix: is not a zombie).
pub fn running(pid: u32) -> bool {
    matches!(stat(pid), Some((_, s)) if s != 'Z')
}

/// Waits until `pid` is gone or a zombie, up to `timeout`; true if it ended.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[cfg(windows)]
pub use os::kill_and_reap;
#[allow(unused_imports)] // each test file uses some of them
pub use os::{children_of, reap_orphan, stat};

/// Processes whose parent is this process: (pid, state letter).
#[allow(dead_code)] // each test file uses some of these
pub fn children_of_self() -> Vec<(u32, char)> {
    children_of(std::process::id())
}

/// The shared-memory resource tracker this process started itself, if any (not one handed down
/// by the test binary): a scenario prints it, since it outlives the scenario as an orphan that
/// the test must reap.
pub fn own_tracker() -> Option<u32> {
    multiprocess::shared_memory::resource_tracker_process()
        .map(|(pid, _)| pid)
        .filter(|&t| stat(t).is_some_and(|(parent, _)| parent == std::process::id()))
}

/// SIGKILLs `pid` and, if it is our child (an orphan reparented to us), reaps it.
#[cfg(unix)]
pub fn kill_and_reap(pid: u32) {
    // SAFETY: plain syscall; a pid that is not ours makes it fail harmlessly.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    // Reap it once it is our child (an orphan may still be on its way to us, its parent's exit
    // being processed); give up when it no longer exists or after 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some((ppid, _)) = stat(pid) {
        if ppid == std::process::id() {
            // SAFETY: waitpid on our own child.
            unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
            return;
        }
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(target_os = "linux")]
mod os {
    use std::collections::BTreeSet;
    use std::time::Duration;

    pub fn adopt_orphans() {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }

    /// This process's open descriptors.
    pub struct Resources(BTreeSet<String>);

    impl Resources {
        pub fn now() -> Resources {
            Resources(open_fds())
        }

        /// Descriptors open now that were not at the start, described.
        pub fn leaked(&self) -> Vec<String> {
            open_fds()
                .difference(&self.0)
                .map(|fd| describe_fd(fd))
                .collect()
        }
    }

    fn open_fds() -> BTreeSet<String> {
        let mut fds: BTreeSet<String> = std::fs::read_dir("/proc/self/fd")
            .expect("read /proc/self/fd")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        // The descriptor read_dir used is closed by now (and may have another number at the
        // end of a test than at its start): keep only those still open.
        // SAFETY: F_GETFD only queries a descriptor number.
        fds.retain(|fd| {
            fd.parse::<i32>()
                .is_ok_and(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        });
        fds
    }

    fn describe_fd(fd: &str) -> String {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}"));
        format!(
            "{fd} -> {}",
            target.map_or_else(|_| "?".into(), |p| p.display().to_string())
        )
    }

    /// Processes whose parent is this process: (pid, state letter).
    pub fn children_of(me: u32) -> Vec<(u32, char)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some((ppid, state)) = stat(pid) {
                if ppid == me {
                    out.push((pid, state));
                }
            }
        }
        out
    }

    /// What `pid` runs (its command line), for a report.
    pub fn program(pid: u32) -> String {
        let line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&line)
            .replace('\0', " ")
            .trim()
            .to_owned()
    }

    /// (ppid, state) of a process, if it exists.
    pub fn stat(pid: u32) -> Option<(u32, char)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &text[text.rfind(')')? + 2..];
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        Some((ppid, state))
    }

    /// Reaps `pid` (an orphan reparented to us) once it ends, waiting up to `timeout`.
    pub fn reap_orphan(pid: u32, timeout: Duration) {
        assert!(super::wait_gone(pid, timeout), "pid {pid} still running");
        // It has ended, but may not be reparented to us yet (its parent's exit is still being
        // processed): retry until it is reaped or no longer exists at all.
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // SAFETY: waitpid on a specific pid that is (or is about to be) our child.
            let r = unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
            let exists = std::path::Path::new(&format!("/proc/{pid}")).exists();
            if r == pid as i32 || !exists || std::time::Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Other Unixes (macOS): no /proc and no subreaper; `ps` lists processes, `/dev/fd` descriptors.
/// Type-checked in CI, not run.
#[cfg(all(unix, not(target_os = "linux")))]
mod os {
    use std::collections::BTreeSet;
    use std::time::Duration;

    pub fn adopt_orphans() {}

    /// This process's open descriptors.
    pub struct Resources(BTreeSet<String>);

    impl Resources {
        pub fn now() -> Resources {
            Resources(open_fds())
        }

        pub fn leaked(&self) -> Vec<String> {
            open_fds().difference(&self.0).cloned().collect()
        }
    }

    fn open_fds() -> BTreeSet<String> {
        let mut fds: BTreeSet<String> = std::fs::read_dir("/dev/fd")
            .expect("read /dev/fd")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        // The descriptor read_dir used is closed by now: keep only those still open.
        fds.retain(|fd| fd.parse::<i32>().is_ok_and(is_open));
        fds
    }

    fn is_open(fd: i32) -> bool {
        // SAFETY: F_GETFD only queries a descriptor number.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    /// What `pid` runs (its command line), for a report.
    pub fn program(pid: u32) -> String {
        let out = std::process::Command::new("ps")
            .args(["-o", "command=", "-p", &pid.to_string()])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// (pid, ppid, state) of every process, from `ps`.
    fn processes() -> Vec<(u32, u32, char)> {
        let out = std::process::Command::new("ps")
            .args(["-A", "-o", "pid=,ppid=,stat="])
            .output()
            .expect("run ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let pid = f.next()?.parse().ok()?;
                let ppid = f.next()?.parse().ok()?;
                let state = f.next()?.chars().next()?;
                Some((pid, ppid, state))
            })
            .collect()
    }

    /// Processes whose parent is `me`: (pid, state letter).
    pub fn children_of(me: u32) -> Vec<(u32, char)> {
        processes()
            .into_iter()
            .filter(|&(_, ppid, _)| ppid == me)
            .map(|(pid, _, s)| (pid, s))
            .collect()
    }

    /// (ppid, state) of a process, if it exists.
    pub fn stat(pid: u32) -> Option<(u32, char)> {
        processes()
            .into_iter()
            .find(|&(p, _, _)| p == pid)
            .map(|(_, ppid, s)| (ppid, s))
    }

    /// Waits up to `timeout` for an orphan to end (launchd reaps it; there is no subreaper).
    pub fn reap_orphan(pid: u32, timeout: Duration) {
        assert!(super::wait_gone(pid, timeout), "pid {pid} still running");
    }
}

/// Windows: processes from a Toolhelp snapshot and process handles; open handles by probing
/// handle values (Windows has no /proc/self/fd, and Wine's `GetProcessHandleCount` reports 0).
/// There are no zombies and no reparenting: an ended process is gone once the last handle to it
/// is closed.
#[cfg(windows)]
mod os {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use windows_sys::Win32::Foundation::{
        CloseHandle, FILETIME, GetHandleInformation, HANDLE, INVALID_HANDLE_VALUE,
    };
    use windows_sys::Win32::Storage::FileSystem::GetFileType;
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW,
        TH32CS_SNAPPROCESS,
    };
    use windows_sys::Win32::System::Threading::{
        GetProcessId, GetProcessTimes, GetThreadId, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
        PROCESS_SYNCHRONIZE, PROCESS_TERMINATE, TerminateProcess, WaitForSingleObject,
    };

    pub fn adopt_orphans() {}

    /// Handle values probed: a test process holds far fewer handles than this.
    const PROBED: usize = 4096;

    /// This process's open handles (value → kind), found by asking `GetHandleInformation` about
    /// every small handle value. Thread handles are left out: libtest starts and joins test
    /// threads while a test runs, and this crate keeps none.
    fn open_handles() -> BTreeMap<usize, &'static str> {
        let mut out = BTreeMap::new();
        for value in (1..=PROBED).map(|i| i * 4) {
            let h = value as HANDLE;
            let mut flags = 0;
            // SAFETY: queries a handle value; an unused value makes the call fail, nothing else.
            if unsafe { GetHandleInformation(h, &mut flags) } == 0 {
                continue;
            }
            // SAFETY: read-only queries on an open handle of this process; each fails
            // harmlessly on a handle of another kind.
            let kind = unsafe {
                if GetThreadId(h) != 0 {
                    continue;
                } else if GetProcessId(h) != 0 {
                    "process"
                } else if GetFileType(h) != 0 {
                    "file or pipe"
                } else {
                    "other (event, ...)"
                }
            };
            out.insert(value, kind);
        }
        out
    }

    /// This process's open handles.
    pub struct Resources(BTreeMap<usize, &'static str>);

    impl Resources {
        pub fn now() -> Resources {
            Resources(open_handles())
        }

        /// Handles open now that were not at the start, described (after a short grace period
        /// for handles that are being closed).
        pub fn leaked(&self) -> Vec<String> {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let leaked: Vec<String> = open_handles()
                    .into_iter()
                    .filter(|(h, _)| !self.0.contains_key(h))
                    .map(|(h, kind)| format!("handle {h:#x}: {kind}"))
                    .collect();
                if leaked.is_empty() || Instant::now() > deadline {
                    return leaked;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// (pid, parent pid) of every process.
    fn processes() -> Vec<(u32, u32)> {
        snapshot()
            .into_iter()
            .map(|(pid, ppid, _)| (pid, ppid))
            .collect()
    }

    /// What `pid` runs (its executable's name), for a report.
    pub fn program(pid: u32) -> String {
        snapshot()
            .into_iter()
            .find(|&(p, _, _)| p == pid)
            .map(|(_, _, exe)| exe)
            .unwrap_or_default()
    }

    /// (pid, parent pid, executable name) of every process.
    fn snapshot() -> Vec<(u32, u32, String)> {
        // SAFETY: a snapshot of the process list; closed below.
        let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
        if snap == INVALID_HANDLE_VALUE {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut entry = PROCESSENTRY32W {
            dwSize: size_of::<PROCESSENTRY32W>() as u32,
            ..Default::default()
        };
        // SAFETY: `entry` is a valid, sized PROCESSENTRY32W for the snapshot's iteration.
        let mut ok = unsafe { Process32FirstW(snap, &mut entry) };
        while ok != 0 {
            let name = &entry.szExeFile;
            let len = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            let exe = String::from_utf16_lossy(&name[..len]);
            out.push((entry.th32ProcessID, entry.th32ParentProcessID, exe));
            // SAFETY: as above.
            ok = unsafe { Process32NextW(snap, &mut entry) };
        }
        // SAFETY: the snapshot handle is ours.
        unsafe { CloseHandle(snap) };
        out
    }

    fn open(pid: u32, access: u32) -> Option<HANDLE> {
        // SAFETY: opens a process by id; fails harmlessly for a pid that is gone.
        let h = unsafe { OpenProcess(access, 0, pid) };
        (!h.is_null()).then_some(h)
    }

    /// Running processes whose parent is `me`: (pid, 'R'). A process started before `me` is not
    /// its child whatever its parent id says: Windows (and Wine) reuse process ids, and a
    /// process keeps its dead parent's id (Wine's `services.exe` names the first process of
    /// the prefix, whose id a later test process may have).
    pub fn children_of(me: u32) -> Vec<(u32, char)> {
        let born = created(me);
        processes()
            .into_iter()
            .filter(|&(pid, ppid)| ppid == me && stat(pid).is_some_and(|(_, s)| s == 'R'))
            .filter(|&(pid, _)| born.is_none() || created(pid) >= born)
            .map(|(pid, _)| (pid, 'R'))
            .collect()
    }

    /// When `pid` was created (`GetProcessTimes`, 100 ns units), if it can be asked.
    fn created(pid: u32) -> Option<u64> {
        let h = open(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
        let mut times = [FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        }; 4];
        let [creation, exit, kernel, user] = &mut times;
        // SAFETY: four out-pointers to FILETIMEs of ours and the handle we just opened, closed
        // after.
        let ok = unsafe {
            let ok = GetProcessTimes(h, creation, exit, kernel, user);
            CloseHandle(h);
            ok
        };
        (ok != 0)
            .then(|| u64::from(creation.dwHighDateTime) << 32 | u64::from(creation.dwLowDateTime))
    }

    /// (parent pid, 'R' running or 'Z' ended) of a process whose object still exists.
    pub fn stat(pid: u32) -> Option<(u32, char)> {
        let h = open(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE)?;
        // SAFETY: a zero-timeout wait on the handle we just opened, then closing it.
        let ended = unsafe {
            let r = WaitForSingleObject(h, 0) == 0;
            CloseHandle(h);
            r
        };
        let ppid = processes()
            .into_iter()
            .find(|&(p, _)| p == pid)
            .map_or(0, |(_, ppid)| ppid);
        Some((ppid, if ended { 'Z' } else { 'R' }))
    }

    /// Ends `pid` with `TerminateProcess` (exit code 1); nothing to reap on Windows.
    pub fn kill_and_reap(pid: u32) {
        if let Some(h) = open(pid, PROCESS_TERMINATE) {
            // SAFETY: terminates and closes the handle we just opened.
            unsafe {
                TerminateProcess(h, 1);
                CloseHandle(h);
            }
        }
    }

    /// Waits up to `timeout` for `pid` to end; nothing to reap on Windows.
    pub fn reap_orphan(pid: u32, timeout: Duration) {
        assert!(super::wait_gone(pid, timeout), "pid {pid} still running");
    }
}

/// A fresh scratch file path for side-channel messages between test processes.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multiprocess-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Reads a scratch file, waiting until it has at least `lines` lines.
pub fn read_lines(path: &std::path::Path, lines: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let got: Vec<String> = text.lines().map(str::to_owned).collect();
        if got.len() >= lines || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Appends a line to a scratch file.
pub fn append_line(path: &std::path::Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    // One write, so that lines appended by several processes never interleave.
    f.write_all(format!("{line}\n").as_bytes()).expect("write");
}

/// Runs the `#[ignore]`d scenario test `name` of this test binary as a separate program (it
/// plays a whole program's `main`), returning the child handle with piped stdout and stderr.
pub fn scenario(name: &str) -> std::process::Child {
    scenario_with(name, None)
}

/// [`scenario`] with one more environment variable.
pub fn scenario_with(name: &str, env: Option<(&str, &str)>) -> std::process::Child {
    let mut cmd = scenario_command(name);
    if let Some((key, value)) = env {
        cmd.env(key, value);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run scenario")
}

/// Runs scenario `name` (with one more environment variable) and reads its stdout up to the
/// line `pids A B …` it prints: the running scenario and those pids.
pub fn scenario_pids(name: &str, env: Option<(&str, &str)>) -> (std::process::Child, Vec<u32>) {
    use std::io::BufRead;
    let mut owner = scenario_with(name, env);
    let mut out = std::io::BufReader::new(owner.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    while !line.starts_with("pids ") {
        line.clear();
        assert!(
            out.read_line(&mut line)
                .expect("read the scenario's stdout")
                > 0,
            "scenario {name} printed no pids"
        );
    }
    let pids = line["pids ".len()..]
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    (owner, pids)
}

/// The command that runs scenario `name` (stdin null; stdout and stderr inherited until set).
pub fn scenario_command(name: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env("MULTIPROCESS_SCENARIO", "1")
    .stdin(std::process::Stdio::null());
    cmd
}

/// True inside a scenario run (see [`scenario`]); scenario tests do nothing otherwise.
pub fn in_scenario() -> bool {
    std::env::var_os("MULTIPROCESS_SCENARIO").is_some()
}

/// Kills process `pid` at once (SIGKILL; `TerminateProcess` with code 9 on Windows): a pool
/// worker of the test's, which its pool reaps.
#[cfg(unix)]
pub fn kill_pid(pid: u32) {
    // SAFETY: signalling a process of ours (reaped by its owner, not before).
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// Kills process `pid` at once (SIGKILL; `TerminateProcess` with code 9 on Windows): a pool
/// worker of the test's, which its pool reaps.
#[cfg(windows)]
pub fn kill_pid(pid: u32) {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_TERMINATE, TerminateProcess};
    // SAFETY: opening, terminating and closing a process handle of one of our processes.
    unsafe {
        let h = OpenProcess(PROCESS_TERMINATE, 0, pid);
        if !h.is_null() {
            TerminateProcess(h, 9);
            CloseHandle(h);
        }
    }
}
