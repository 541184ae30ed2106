//! The optional progress bar of `map`/`imap` (cargo feature `progress`): drawn on stderr when
//! it is a terminal, hidden otherwise.

/// A job's bar, advanced as its chunks complete.
pub(crate) struct Bar {
    #[cfg(feature = "progress")]
    bar: indicatif::ProgressBar,
    /// Items per chunk (the last chunk may be shorter).
    chunk: usize,
    /// All items, when known (map), for the last chunk's size.
    items: Option<usize>,
}

impl Bar {
    /// A bar for `items` items (`None`: unknown, as for imap) in chunks of `chunk`.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(crate) fn new(items: Option<usize>, chunk: usize) -> Bar {
        Bar {
            #[cfg(feature = "progress")]
            bar: indicatif::ProgressBar::with_draw_target(
                items.map(|n| n as u64),
                indicatif::ProgressDrawTarget::stderr(),
            ),
            chunk,
            items,
        }
    }

    /// Chunk `index` completed.
    pub(crate) fn advance(&self, index: usize) {
        let start = index.saturating_mul(self.chunk);
        let n = match self.items {
            Some(items) => self.chunk.min(items.saturating_sub(start)),
            None => self.chunk,
        };
        #[cfg(feature = "progress")]
        self.bar.inc(n as u64);
        #[cfg(not(feature = "progress"))]
        let _ = n;
    }

    /// The job is complete.
    pub(crate) fn finish(&self) {
        #[cfg(feature = "progress")]
        self.bar.finish();
    }
}
