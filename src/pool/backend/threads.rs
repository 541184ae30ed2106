//! Workers as threads of this process, over the same [`Link`] as worker processes: for tests
//! of the pool's supervision without starting processes. A "kill" is a flag the worker obeys
//! at its next step (it cannot stop a task midway): it then ends without a reply, as a killed
//! process would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::super::protocol::Setup;
use super::super::worker::{Link, work};
use crate::error::{Error, Result};

/// The exit code a killed thread worker reports (SIGKILL's).
const KILLED: i32 = -9;

/// Thread workers whose task channels hold `channel_bytes` each.
pub(crate) struct Threads {
    channel_bytes: usize,
}

/// One worker thread.
pub(crate) struct ThreadWorker {
    link: Link,
    killed: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
}

impl Threads {
    #[cfg_attr(not(test), allow(dead_code))] // built only by the crate's tests
    pub(crate) fn new(channel_bytes: usize) -> Threads {
        Threads { channel_bytes }
    }

    pub(crate) fn start(&self, n: u64, setup: &Setup) -> Result<ThreadWorker> {
        let link = Link::new(self.channel_bytes)?;
        let killed = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let (l, s, k, e) = (link.clone(), setup.clone(), killed.clone(), ended.clone());
        std::thread::Builder::new()
            .name(format!("ThreadPoolWorker-{n}"))
            .spawn(move || {
                work(&l, &s, Some(&|| k.load(Ordering::SeqCst)));
                e.store(true, Ordering::SeqCst);
            })
            .map_err(|e| Error::io("starting a pool worker thread", e))?;
        Ok(ThreadWorker {
            link,
            killed,
            ended,
        })
    }
}

impl ThreadWorker {
    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    pub(crate) fn alive(&self) -> bool {
        !self.ended.load(Ordering::SeqCst)
    }

    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    /// Waits up to `grace` for the thread to end (a thread stuck in a long task is left to
    /// end on its own: it replies nothing more once killed).
    pub(crate) fn reap(&self, grace: Duration) -> i32 {
        let until = Instant::now() + grace;
        while self.alive() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        if self.alive() {
            self.killed.store(true, Ordering::SeqCst);
        }
        if self.killed.load(Ordering::SeqCst) {
            KILLED
        } else {
            0
        }
    }
}
