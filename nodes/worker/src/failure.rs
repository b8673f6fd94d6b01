//! Node failures from the libraries' errors. Only `NodeError`'s fields cross to `dag`, so a
//! hint the runtime, tasks or metrics error gives must be taken out of it here, or the user
//! never sees it.

use std::error::Error;

use dag_diagnostic::Hint;
use dag_protocol::NodeError;

/// [`NodeError::caused`], with the hint of the first error in `err`'s chain that has one.
pub(crate) fn caused(message: impl Into<String>, err: &(dyn Error + 'static)) -> NodeError {
    let mut failure = NodeError::caused(message, err);
    failure.hint = dag_diagnostic::chain(err).find_map(hint_of);
    failure
}

/// One error's hint, for the error types with hints that the worker's libraries raise.
fn hint_of(e: &(dyn Error + 'static)) -> Option<String> {
    if let Some(e) = e.downcast_ref::<dag_runtime::Error>() {
        e.hint()
    } else if let Some(e) = e.downcast_ref::<crate::evaluate::ModelError>() {
        e.hint()
    } else if let Some(e) = e.downcast_ref::<dag_tasks::Error>() {
        e.hint()
    } else if let Some(e) = e.downcast_ref::<dag_metrics::MetricError>() {
        e.hint()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metrics_error_gives_its_hint_to_the_node_error() {
        let e = dag_metrics::MetricError::Empty { what: "AUROC" };
        let failure = crate::scores::metric_err("Failed to score", &e);
        assert_eq!(failure.message, "Failed to score");
        assert_eq!(
            failure.causes,
            ["Failed to compute `AUROC`: the input is empty"]
        );
        assert_eq!(failure.hint.as_deref(), Some("pass at least one row"));
    }

    #[test]
    fn a_runtime_error_under_a_task_error_gives_its_hint() {
        // As `evaluate` sees it: the task library wraps the model's error, which wraps the
        // runtime's, and only the runtime knows what to do.
        let e = dag_tasks::Error::Model {
            task: "t".into(),
            source: Box::new(crate::evaluate::ModelError::from(
                dag_runtime::Error::NoChatTemplate,
            )),
        };
        let failure = caused("Failed to evaluate task `t`", &e);
        assert_eq!(failure.causes.len(), 2, "{failure:?}");
        assert!(
            failure
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("chat_template")),
            "{failure:?}"
        );
        assert!(!failure.causes.iter().any(|c| c.contains("hint")));
    }

    #[test]
    fn an_error_without_a_hint_leaves_none() {
        let e = std::io::Error::other("disk full");
        assert_eq!(caused("Failed to write", &e).hint, None);
    }
}
