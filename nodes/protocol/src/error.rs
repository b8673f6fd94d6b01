//! How a node fails: a message, its causes and a hint, the same in process and across the
//! worker boundary.

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
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}
