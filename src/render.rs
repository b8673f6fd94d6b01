//! Rendering for people: `error:` / `Caused by:` / `hint:`, and tables.

use std::io::Write;

/// `println!` that never panics: when stdout is a closed pipe (`dag log | head`) the reader
/// has what it wanted, so the process ends quietly with success, as ripgrep's does. Commands
/// print their results on stdout only after their work is recorded, so this never cuts a
/// run short.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::render::out_line(format_args!($($arg)*))
    };
}

/// `print!` with [`outln!`]'s handling of a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::render::out_text(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a closed stderr must not abort a run.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// See [`outln!`].
pub fn out_line(args: std::fmt::Arguments<'_>) {
    out_text(format_args!("{args}\n"));
}

/// See [`out!`].
pub fn out_text(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything succeeded.
    Success,
    /// A node failed (others may have finished).
    NodeFailed,
    /// The input was wrong: graph, arguments, store.
    BadInput,
    /// Stopped by Ctrl-C.
    Cancelled,
    /// Stopped by SIGTERM (Slurm, systemd, `kill`), after recording the run.
    Terminated,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(match e {
            Exit::Success => 0,
            Exit::NodeFailed => 1,
            Exit::BadInput => 2,
            Exit::Cancelled => 130,
            Exit::Terminated => 143,
        })
    }
}

/// Prints an error with its causes, then the hint of every cause that has one.
pub fn error(e: &anyhow::Error) {
    let text = dag_diagnostic::render(e.chain(), hint_of);
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A cause's hint: a `&dyn Error` cannot be asked for a trait, so each error type with hints
/// that can reach the CLI is named here.
fn hint_of(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use dag_diagnostic::Hint;
    if let Some(e) = e.downcast_ref::<Hinted>() {
        e.hint()
    } else if let Some(e) = e.downcast_ref::<dag_store::Error>() {
        e.hint()
    } else if let Some(e) = e.downcast_ref::<dag_engine::TargetError>() {
        e.hint()
    } else if let Some(e) = e.downcast_ref::<dag_engine::GraphError>() {
        e.hint()
    } else {
        None
    }
}

/// An error of the CLI's own with what to do about it: `bail!(Hinted::new(message, hint))`.
#[derive(Debug)]
pub struct Hinted {
    message: String,
    hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Hinted {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

impl dag_diagnostic::Hint for Hinted {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

/// Left-aligned columns.
pub fn table(rows: &[Vec<String>]) -> String {
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i + 1 == r.len() {
                    s.clone()
                } else {
                    format!("{s:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Truncates a cell for display.
pub fn cell(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', "\\n");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut t: String = one_line.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
