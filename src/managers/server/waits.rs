//! The waits that need the server's whole state: a barrier's and a condition's.

use super::*;

pub(super) fn broken_barrier() -> Reply {
    remote("BrokenBarrierError", "the barrier is broken")
}

impl State {
    /// `threading.Barrier.wait`: the caller's arrival index (0 for the first) once all parties
    /// have arrived. A timeout, an abort, a reset, or a waiter whose client hung up breaks the
    /// barrier for everyone waiting (Python's would wait for ever on a dead party).
    pub(super) fn barrier_wait(
        &self,
        mut objects: std::sync::MutexGuard<'_, Objects>,
        id: u64,
        timeout: Option<f64>,
        gone: &dyn Fn() -> bool,
    ) -> Option<Reply> {
        let deadline = timeout.and_then(super::deadline_in);
        let Some(Object::Barrier(b)) = objects.table.get_mut(&id) else {
            return Some(remote("TypeError", format!("object {id} is not a barrier")));
        };
        if b.broken {
            return Some(broken_barrier());
        }
        let (index, generation, resets) = (b.waiting, b.generation, b.resets);
        b.waiting += 1;
        if b.waiting == b.parties {
            b.waiting = 0;
            b.generation += 1;
            self.notify();
            return Some(Reply::Len(u64::from(index)));
        }
        loop {
            objects = self.pause(objects, deadline);
            let Some(Object::Barrier(b)) = objects.table.get_mut(&id) else {
                return Some(broken_barrier());
            };
            if b.generation != generation {
                return Some(Reply::Len(u64::from(index)));
            }
            if b.broken || b.resets != resets {
                return Some(broken_barrier());
            }
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            let hung_up = !timed_out && gone();
            if timed_out || hung_up {
                b.broken = true;
                b.waiting = 0;
                self.notify();
                return (!hung_up).then(broken_barrier);
            }
        }
    }
}

impl State {
    /// `threading.Condition.wait`: releases the condition's lock (all levels), waits to be
    /// notified or for the timeout, takes the lock back at the same depth; true if notified.
    pub(super) fn condition_wait(
        &self,
        mut objects: std::sync::MutexGuard<'_, Objects>,
        id: u64,
        client: u64,
        timeout: Option<f64>,
        gone: &dyn Fn() -> bool,
    ) -> Option<Reply> {
        let deadline = timeout.and_then(super::deadline_in);
        let Some(Object::Condition(c)) = objects.table.get_mut(&id) else {
            return Some(remote(
                "TypeError",
                format!("object {id} is not a condition"),
            ));
        };
        if c.holder != Some(client) {
            return Some(remote("RuntimeError", "cannot wait on un-acquired lock"));
        }
        let depth = c.depth;
        c.holder = None;
        c.depth = 0;
        c.next_ticket += 1;
        let ticket = c.next_ticket;
        c.waiting.push_back(ticket);
        self.notify();
        let mut notified = false;
        loop {
            let Some(Object::Condition(c)) = objects.table.get_mut(&id) else {
                return Some(remote("KeyError", format!("no object with id {id}")));
            };
            if !notified {
                if let Some(at) = c.notified.iter().position(|&t| t == ticket) {
                    c.notified.swap_remove(at);
                    notified = true;
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    c.waiting.retain(|&t| t != ticket);
                    notified = false;
                    // Timed out: from here on only the lock is waited for.
                    c.notified.retain(|&t| t != ticket);
                }
            }
            let done_waiting = notified || deadline.is_some_and(|d| Instant::now() >= d);
            if done_waiting && c.holder.is_none() {
                c.holder = Some(client);
                c.depth = depth;
                return Some(Reply::Bool(notified));
            }
            objects = self.pause(objects, deadline);
            if gone() {
                if let Some(Object::Condition(c)) = objects.table.get_mut(&id) {
                    c.waiting.retain(|&t| t != ticket);
                    c.notified.retain(|&t| t != ticket);
                }
                return None;
            }
        }
    }
}
