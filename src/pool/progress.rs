//! The optional progress bar of `map`/`imap` (cargo feature `progress`): drawn on stderr when
//! it is a terminal, hidden otherwise. With a known total (`map`) it is a bar with
//! `done/total`; with an unknown one (`imap`) a spinner with the count done. When the job is
//! complete the bar stays and its line is ended, so that what is written next starts on a line
//! of its own.

/// A job's bar, advanced as its chunks complete.
pub(crate) struct Bar {
    #[cfg(feature = "progress")]
    bar: indicatif::ProgressBar,
    /// Ends the line the finished bar was drawn on (the bar leaves the cursor at its end).
    #[cfg(feature = "progress")]
    end_line: Box<dyn Fn() + Send + Sync>,
    /// Items per chunk (the last chunk may be shorter).
    chunk: usize,
    /// All items, when known (map), for the last chunk's size.
    items: Option<usize>,
}

/// The bar's look while the total is known, and not.
#[cfg(feature = "progress")]
const KNOWN: &str = "{wide_bar} {pos}/{len}";
#[cfg(feature = "progress")]
const UNKNOWN: &str = "{spinner} {pos} done";

impl Bar {
    /// A bar for `items` items (`None`: unknown, as for imap) in chunks of `chunk`.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(crate) fn new(items: Option<usize>, chunk: usize) -> Bar {
        #[cfg(feature = "progress")]
        return Bar::drawn_on(
            items,
            chunk,
            indicatif::ProgressDrawTarget::stderr(),
            Box::new(|| {
                use std::io::Write as _;
                let _ = std::io::stderr().write_all(b"\n");
            }),
        );
        #[cfg(not(feature = "progress"))]
        Bar { chunk, items }
    }

    /// [`new`](Bar::new), drawn on `target`, whose line `end_line` ends.
    #[cfg(feature = "progress")]
    fn drawn_on(
        items: Option<usize>,
        chunk: usize,
        target: indicatif::ProgressDrawTarget,
        end_line: Box<dyn Fn() + Send + Sync>,
    ) -> Bar {
        let bar = indicatif::ProgressBar::with_draw_target(items.map(|n| n as u64), target);
        bar.set_style(style(if items.is_some() { KNOWN } else { UNKNOWN }));
        Bar {
            bar,
            end_line,
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

    /// The job is complete: the bar is drawn once more, as it ends, with its line ended.
    pub(crate) fn finish(&self) {
        #[cfg(feature = "progress")]
        if !self.bar.is_finished() {
            self.bar.finish();
            if !self.bar.is_hidden() {
                (self.end_line)();
            }
        }
    }
}

#[cfg(feature = "progress")]
fn style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

#[cfg(all(test, feature = "progress"))]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A terminal that records what is written to it.
    #[derive(Debug, Default, Clone)]
    struct Recorder(Arc<Mutex<String>>);

    impl Recorder {
        fn text(&self) -> String {
            self.0.lock().unwrap().clone()
        }
        fn push(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
    }

    impl indicatif::TermLike for Recorder {
        fn width(&self) -> u16 {
            40
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.push(&format!("<up {n}>"))
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.push(&format!("<down {n}>"))
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.push(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.push(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.push("<clear>")
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(items: Option<usize>) -> String {
        let term = Recorder::default();
        let target = indicatif::ProgressDrawTarget::term_like(Box::new(term.clone()));
        let end = term.clone();
        let bar = Bar::drawn_on(items, 10, target, Box::new(move || drop(end.push("\n"))));
        for i in 0..3 {
            bar.advance(i);
            bar.bar.tick();
        }
        let running = term.text();
        bar.finish();
        bar.finish(); // once only
        format!("{running}|{}", term.text())
    }

    #[test]
    fn known_total_counts_towards_it() {
        let text = run(Some(25));
        let (running, done) = text.split_once('|').unwrap();
        assert!(running.contains(" 10/25"), "{running:?}");
        assert!(done.ends_with(" 25/25\n"), "{done:?}");
        assert_eq!(done.matches('\n').count(), 1, "{done:?}");
    }

    #[test]
    fn unknown_total_counts_without_claiming_one() {
        let text = run(None);
        let (running, done) = text.split_once('|').unwrap();
        assert!(!running.contains('/'), "{running:?}");
        assert!(running.contains("10 done"), "{running:?}");
        assert!(done.ends_with('\n'), "{done:?}");
        assert!(done.trim_end().ends_with(" 30 done"), "{done:?}");
        assert_eq!(done.matches('\n').count(), 1, "{done:?}");
    }
}
