//! Progress bars for long command-line work (`replay`, `check`, `directory export-legacy`).
//!
//! A bar is drawn on standard error, and only when standard error is a terminal: indicatif's
//! stderr target hides itself otherwise (and when `TERM` is unset or `dumb`), so output piped
//! into a file or a CI log is byte for byte what it is without bars. A [`Progress`] starts
//! hidden; a command calls [`Progress::show`] once the work is large enough to be worth a bar.
//!
//! Report lines written while a bar is on the screen go through [`Lines`]: whole lines only,
//! with the bar cleared before them and drawn again after, so that neither tears the other.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes read, with throughput and time left.
    Bytes,
    /// Messages, with messages per second and time left.
    Messages,
    /// Directory rows written.
    Rows,
}

/// A progress bar on standard error: hidden until [`Progress::show`], and hidden for good when
/// standard error is not a terminal. Clones share the bar.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A hidden bar over `total` units, its line starting with `label`.
    pub fn new(label: &'static str, unit: Unit, total: u64) -> Self {
        // The bar takes what the counts leave of the terminal's width; the message (a file
        // name, a count) comes last and is kept short by the callers.
        let template = match unit {
            Unit::Bytes => {
                "{prefix} [{wide_bar}] {bytes:>10}/{total_bytes} {bytes_per_sec:>12} ETA {eta:>3} \
                 {msg}"
            }
            Unit::Messages => {
                "{prefix} [{wide_bar}] {human_pos:>7}/{human_len} messages {per_sec:0} ETA \
                 {eta:>3} {msg}"
            }
            Unit::Rows => "{prefix} [{wide_bar}] {human_pos:>7}/{human_len} rows {msg}",
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
            .with_style(style)
            .with_prefix(label)
            // A bar dropped on an early return (an error, a broken pipe) leaves no trace.
            .with_finish(ProgressFinish::AndClear);
        Self { bar }
    }

    /// Starts drawing on standard error, if it is a terminal.
    pub fn show(&self) {
        if self.bar.is_hidden() && !self.bar.is_finished() {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Whether the bar is being drawn.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Advances by `n` units.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// The text after the counts (the file at hand, a message count).
    pub fn set_message(&self, message: impl Into<Cow<'static, str>>) {
        self.bar.set_message(message);
    }

    /// Units done so far.
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Time since the bar was made.
    pub fn elapsed(&self) -> std::time::Duration {
        self.bar.elapsed()
    }

    /// `read`, advancing the bar by every byte read through it.
    pub fn wrap_read<R: Read>(&self, read: R) -> impl Read + use<R> {
        self.bar.wrap_read(read)
    }

    /// Clears the bar for good; what is written afterwards goes straight through.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        self.bar.set_draw_target(ProgressDrawTarget::hidden());
    }

    /// `inner` (standard output) made safe to write while the bar shows: when standard output
    /// is a terminal too, each line is written with the bar out of the way.
    pub fn stdout<W: Write>(&self, inner: W) -> Lines<W> {
        Lines::new(inner, self.bar.clone(), io::stdout().is_terminal())
    }

    /// `inner` (standard error) made safe to write while the bar shows.
    pub fn stderr<W: Write>(&self, inner: W) -> Lines<W> {
        Lines::new(inner, self.bar.clone(), true)
    }
}

/// The last part of `path` for a bar's message: at most [`NAME_WIDTH`] characters, with an
/// ellipsis in front when cut.
pub fn short_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy());
    let count = name.chars().count();
    if count <= NAME_WIDTH {
        return name.into_owned();
    }
    let tail: String = name.chars().skip(count + 1 - NAME_WIDTH).collect();
    format!("…{tail}")
}

/// The widest file name a bar shows.
const NAME_WIDTH: usize = 24;

/// A writer that, while the bar is drawn on the same terminal, holds bytes back until a line
/// is complete and writes complete lines with the bar cleared; otherwise it writes straight
/// through, so the bytes are the same with or without a bar.
#[derive(Debug)]
pub struct Lines<W: Write> {
    inner: W,
    bar: ProgressBar,
    /// The stream shares the terminal with the bar.
    same_terminal: bool,
    /// The unfinished last line, held back while the bar shows.
    pending: Vec<u8>,
}

impl<W: Write> Lines<W> {
    fn new(inner: W, bar: ProgressBar, same_terminal: bool) -> Self {
        Self {
            inner,
            bar,
            same_terminal,
            pending: Vec::new(),
        }
    }

    fn bar_in_the_way(&self) -> bool {
        self.same_terminal && !self.bar.is_hidden()
    }

    fn write_out(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.bar_in_the_way() {
            let inner = &mut self.inner;
            self.bar
                .suspend(|| inner.write_all(bytes).and_then(|()| inner.flush()))
        } else {
            self.inner.write_all(bytes)
        }
    }
}

impl<W: Write> Write for Lines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.is_empty() && !self.bar_in_the_way() {
            return self.inner.write(buf);
        }
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            let rest = self.pending.split_off(end + 1);
            let lines = std::mem::replace(&mut self.pending, rest);
            self.write_out(&lines)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.write_out(&pending)?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for Lines<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_keep_the_end() {
        assert_eq!(short_name(Path::new("/var/spool/EXPORT.TXT")), "EXPORT.TXT");
        let long = short_name(Path::new("/x/a-very-long-export-file-name-0001.txt"));
        assert!(
            long.starts_with('…') && long.ends_with("-file-name-0001.txt"),
            "{long}"
        );
        assert_eq!(long.chars().count(), NAME_WIDTH);
    }

    #[test]
    fn hidden_bar_writes_straight_through() {
        let progress = Progress::new("test", Unit::Messages, 10);
        let mut out = Lines::new(Vec::new(), progress.bar.clone(), true);
        write!(out, "a").unwrap();
        assert_eq!(out.inner, b"a");
        writeln!(out, "b\nc").unwrap();
        out.flush().unwrap();
        assert_eq!(out.inner, b"ab\nc\n");
    }

    #[test]
    fn lines_wait_for_their_end_while_the_bar_is_in_the_way() {
        let progress = Progress::new("test", Unit::Bytes, 10);
        progress
            .bar
            .set_draw_target(ProgressDrawTarget::term_like(Box::new(NullTerm)));
        let mut out = Lines::new(Vec::new(), progress.bar.clone(), true);
        assert!(out.bar_in_the_way());
        write!(out, "half").unwrap();
        assert!(out.inner.is_empty(), "no half line under the bar");
        write!(out, " and whole\nnext").unwrap();
        assert_eq!(out.inner, b"half and whole\n");
        progress.finish();
        assert!(!out.bar_in_the_way());
        out.flush().unwrap();
        assert_eq!(out.inner, b"half and whole\nnext");
    }

    /// A terminal that draws nothing (a visible bar without a real terminal).
    #[derive(Debug)]
    struct NullTerm;

    impl indicatif::TermLike for NullTerm {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, _: &str) -> io::Result<()> {
            Ok(())
        }
        fn write_str(&self, _: &str) -> io::Result<()> {
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }
}
