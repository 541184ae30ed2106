//! Python's repr of a process: `<Process name='Process-1' pid=7569 parent=7527 stopped
//! exitcode=0>`.

use std::fmt;

use super::{Process, State};
use crate::sys;
use crate::sys::lock;

impl fmt::Debug for Process {
    /// Python's repr: `<Process name='Process-1' pid=7569 parent=7527 stopped exitcode=0>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (status, pid, code) = match &*lock(&self.shared.state) {
            State::Initial { .. } => ("initial", None, None),
            State::Closed => ("closed", None, None),
            State::Started(c) => match c.handle.exitcode() {
                None => ("started", Some(c.handle.pid()).filter(|&p| p != 0), None),
                Some(code) => (
                    "stopped",
                    Some(c.handle.pid()).filter(|&p| p != 0),
                    Some(code),
                ),
            },
        };
        write!(f, "<Process name={:?}", self.name())?;
        if let Some(pid) = pid {
            write!(f, " pid={pid} parent={}", self.shared.creator)?;
        }
        write!(f, " {status}")?;
        match code.map(|c| (c, sys::signal_name(-c))) {
            Some((_, Some(signal))) => write!(f, " exitcode=-{signal}")?,
            Some((c, None)) => write!(f, " exitcode={c}")?,
            None => {}
        }
        if self.daemon() {
            write!(f, " daemon")?;
        }
        write!(f, ">")
    }
}
