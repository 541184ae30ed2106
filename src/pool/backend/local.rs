//! Worker processes on this machine: each a daemonic [`Process`] running the worker loop over
//! a [`Link`] (two rings in shared memory and a control block).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::super::doorbell::Doorbell;
use super::super::protocol::Setup;
use super::super::worker::{Link, worker_main};
use super::CHANNEL_BYTES;
use crate::context::Context;
use crate::error::Result;
use crate::process::Process;

/// Workers started with one start method.
pub(crate) struct Local {
    context: Context,
    /// What the workers ring after each reply.
    pub(super) bell: Doorbell,
}

/// One worker process.
pub(crate) struct LocalWorker {
    /// (A `Process` is not `Sync`: its target waits in it until `start`.)
    process: Mutex<Process>,
    link: Link,
}

impl Local {
    /// Workers started in `context`, whose replies `readers` threads read.
    pub(crate) fn new(context: Context, readers: usize) -> Result<Local> {
        Ok(Local {
            context,
            bell: Doorbell::new(readers)?,
        })
    }

    fn name(&self, n: u64) -> String {
        let prefix = self.context.start_method().process_prefix();
        let method = prefix.strip_suffix("Process").unwrap_or(prefix);
        format!("{method}PoolWorker-{n}")
    }

    pub(crate) fn start(&self, n: u64, setup: &Setup) -> Result<LocalWorker> {
        let mut link = Link::new(CHANNEL_BYTES, &self.bell, n)?;
        let mut process = self
            .context
            .process(worker_main, (link.clone(), setup.clone()))
            .with_daemon(true)
            .with_name(self.name(n));
        process.start()?;
        // The child has the link's handles now (sent, or inherited by a fork), and the job
        // has dropped its clone of the link: ours can go.
        link.close_handles();
        Ok(LocalWorker {
            process: Mutex::new(process),
            link,
        })
    }
}

impl LocalWorker {
    fn process(&self) -> MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    pub(crate) fn alive(&self) -> bool {
        self.process().is_alive().unwrap_or(false)
    }

    pub(crate) fn kill(&self) {
        let _ = self.process().kill();
    }

    /// Its exit code once it has ended (reaped); `None` while it runs. Never waits.
    pub(crate) fn ended(&self) -> Option<i32> {
        let process = self.process();
        match process.is_alive() {
            Ok(true) => None,
            Ok(false) => Some(process.exitcode().ok().flatten().unwrap_or(-1)),
            Err(_) => Some(-1),
        }
    }

    /// Kills it and waits for its end (SIGKILL ends any process, so the join returns).
    pub(crate) fn reap_now(&self) -> i32 {
        let process = self.process();
        let _ = process.kill();
        let _ = process.join();
        process.exitcode().ok().flatten().unwrap_or(-1)
    }

    pub(crate) fn start_failure(&self) -> Option<crate::error::Error> {
        self.process().start_failure(Duration::ZERO)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.process().pid()
    }
}
