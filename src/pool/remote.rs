//! Jobs for a pool in another process (a manager's: `managers::PoolProxy`). The client
//! encodes the job exactly as a local pool would (the code to run, sealed to this build, and
//! each task's arguments, chunked), the manager's pool runs it, and the outcomes travel back to
//! be decoded by the client, which alone knows the types.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{Code, Failure};
use super::result::{AsyncResult, Outcome, Payload, decode_chunks, decode_one};
use super::{Pool, chunk, default_chunksize, encode_args};
use crate::error::Result;
use crate::registry::{Data, Target, call_target};
use crate::wire::Bytes;

use super::result::JobCore;

/// A job encoded by the client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteJob {
    code: Code,
    tasks: Vec<Bytes>,
}

/// Each task's outcome, in order: its encoded value, or why there is none.
pub(crate) type RemoteOutcomes = Vec<std::result::Result<Bytes, Failure>>;

/// How one outcome travels.
pub(crate) fn remote_outcome(outcome: &Outcome) -> std::result::Result<Bytes, Failure> {
    match outcome {
        Ok(payload) => Ok(Bytes(payload.to_vec())),
        Err(f) => Err(f.clone()),
    }
}

impl RemoteJob {
    /// The number of tasks (a map's chunks).
    pub(crate) fn tasks(&self) -> usize {
        self.tasks.len()
    }

    /// `f(args...)` as one task (`apply`).
    pub(crate) fn apply<F: Target<A, R>, A: Data, R: Data>(_f: F, args: &A) -> Result<RemoteJob> {
        let code = Code::of(call_target::<F, A, R>)?;
        Ok(RemoteJob {
            code,
            tasks: vec![Bytes(encode_args(args)?)],
        })
    }

    /// A `map` or `starmap` in chunks: `code` (see [`map_code`](super::map_code)) runs each
    /// chunk; `processes` sets the default chunk size.
    pub(crate) fn chunked<X: Serialize>(
        code: Code,
        items: impl IntoIterator<Item = X>,
        chunksize: Option<usize>,
        processes: usize,
    ) -> Result<RemoteJob> {
        let items: Vec<X> = items.into_iter().collect();
        let len = items.len();
        let chunksize = chunksize
            .unwrap_or_else(|| default_chunksize(len, processes))
            .max(1);
        let mut items = items.into_iter();
        let mut tasks = Vec::with_capacity(len.div_ceil(chunksize));
        for i in 0..len.div_ceil(chunksize) {
            let n = chunksize.min(len - i * chunksize);
            tasks.push(Bytes(crate::wire::refusing_handles(
                super::protocol::NO_HANDLES,
                || chunk::encode_into(&mut items, n, Vec::new()),
            )?));
        }
        Ok(RemoteJob { code, tasks })
    }
}

impl Pool {
    /// Starts a job encoded by a client in another process; its result gives every outcome.
    ///
    /// # Errors
    /// [`Error::State`](crate::Error::State) if the pool is not running.
    pub(crate) fn start_remote(&self, job: RemoteJob) -> Result<AsyncResult<RemoteOutcomes>> {
        let core = JobCore::new(Some(job.tasks.len()), None);
        // For a client reading the outcomes as they come (`imap_unordered`).
        core.track_completion();
        if job.tasks.is_empty() {
            core.set_total(0);
        } else {
            let tasks = job.tasks.into_iter().map(|b| b.0);
            self.shared.submit(job.code, tasks, &core, 0, None)?;
        }
        Ok(self.result(core, outcomes))
    }
}

fn outcomes(all: &[&Outcome]) -> Result<RemoteOutcomes> {
    Ok(all.iter().map(|o| remote_outcome(o)).collect())
}

fn local(remote: RemoteOutcomes) -> Vec<Outcome> {
    remote
        .into_iter()
        .map(|o| {
            o.map(|b| Payload {
                message: b.0,
                start: 0,
            })
        })
        .collect()
}

/// The value of an `apply` job run elsewhere.
pub(crate) fn decode_remote_one<R: DeserializeOwned>(remote: RemoteOutcomes) -> Result<R> {
    let all = local(remote);
    decode_one(&all.iter().collect::<Vec<_>>())
}

/// The values of a `map` or `starmap` job run elsewhere.
pub(crate) fn decode_remote_chunks<R: DeserializeOwned>(remote: RemoteOutcomes) -> Result<Vec<R>> {
    let all = local(remote);
    decode_chunks(&all.iter().collect::<Vec<_>>())
}
