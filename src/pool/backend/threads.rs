//! Workers as threads of this process, over the same [`Link`] as worker processes: for tests
//! of the pool's supervision without starting processes. A "kill" is a flag the worker obeys
//! at its next step (it cannot stop a task midway): it then ends without a reply, as a killed
//! process would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::super::doorbell::Doorbell;
use super::super::protocol::Setup;
use super::super::worker::{Link, work};
use crate::error::{Error, Result};

/// The exit code a killed thread worker reports (SIGKILL's).
const KILLED: i32 = -9;

/// Thread workers whose task channels hold `channel_bytes` each.
pub(crate) struct Threads {
    channel_bytes: usize,
    /// What the workers ring after each reply.
    pub(super) bell: Doorbell,
}

/// One worker thread.
pub(crate) struct ThreadWorker {
    link: Link,
    killed: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
}

impl Threads {
    #[cfg_attr(not(test), allow(dead_code))] // built only by the crate's tests
    pub(crate) fn new(channel_bytes: usize, readers: usize) -> Result<Threads> {
        Ok(Threads {
            channel_bytes,
            bell: Doorbell::new(readers)?,
        })
    }

    pub(crate) fn start(&self, n: u64, setup: &Setup) -> Result<ThreadWorker> {
        let link = Link::new(self.channel_bytes, &self.bell, n)?;
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

    /// Its exit code once the thread has ended; `None` while it runs.
    pub(crate) fn ended(&self) -> Option<i32> {
        (!self.alive()).then(|| self.exitcode())
    }

    /// Counts it killed at once: a thread stuck in a long task is left to end on its own (it
    /// replies nothing more once killed).
    pub(crate) fn reap_now(&self) -> i32 {
        self.killed.store(true, Ordering::SeqCst);
        self.exitcode()
    }

    fn exitcode(&self) -> i32 {
        if self.killed.load(Ordering::SeqCst) {
            KILLED
        } else {
            0
        }
    }
}
