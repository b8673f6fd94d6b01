//! How a node fails: a message, its causes and a hint, the same in process and across the
//! worker boundary. The hint is a field, not part of the message, so it is printed once and
//! last (see `dag_diagnostic::Hint`).

/// Why a node failed, with what the user can do about it.
#[derive(Debug, Clone)]
pub struct NodeError {
    /// What went wrong, "Failed to ..." style.
    pub message: String,
    /// Causes, outermost first.
    pub causes: Vec<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// The node stopped because the run was cancelled.
    pub cancelled: bool,
}

impl NodeError {
    /// A failure with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        NodeError {
            message: message.into(),
            causes: vec![],
            hint: None,
            cancelled: false,
        }
    }
    /// A failure caused by `err` (its source chain becomes the causes).
    pub fn caused(message: impl Into<String>, err: &dyn std::error::Error) -> Self {
        let mut e = NodeError::msg(message);
        let mut cur: Option<&dyn std::error::Error> = Some(err);
        while let Some(c) = cur {
            e.causes.push(c.to_string());
            cur = c.source();
        }
        e
    }
    /// A failure caused by `err`, with `err`'s hint: what the library that failed knows to
    /// suggest reaches the user. (Hints deeper in the chain need the caller to know their
    /// types; see the worker's `failure::caused`.)
    pub fn caused_hinted<E: std::error::Error + dag_diagnostic::Hint>(
        message: impl Into<String>,
        err: &E,
    ) -> Self {
        let mut e = NodeError::caused(message, err);
        e.hint = err.hint();
        e
    }
    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// The run was cancelled.
    pub fn cancelled() -> Self {
        NodeError {
            cancelled: true,
            ..NodeError::msg("cancelled")
        }
    }
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for c in &self.causes {
            write!(f, "\n  Caused by: {c}")?;
        }
        Ok(())
    }
}

impl dag_diagnostic::Hint for NodeError {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dag_diagnostic::Hint;

    #[test]
    fn the_hint_is_asked_for_not_written_into_the_message() {
        let io = std::io::Error::other("disk full");
        let e = NodeError::caused("Failed to write `x`", &io).hint("free some space");
        assert_eq!(e.to_string(), "Failed to write `x`\n  Caused by: disk full");
        assert_eq!(Hint::hint(&e).as_deref(), Some("free some space"));
        assert_eq!(Hint::hint(&NodeError::msg("Failed")), None);
    }
}
