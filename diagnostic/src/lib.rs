//! Errors that say what to do, in one model for every crate: an error's message says what
//! went wrong, its [`Hint`] says what the user can do about it, and [`render`] prints both
//! the way uv and cargo do (`error:`, `Caused by:`, then `hint:` last). Keeping the hint out
//! of the message lets it cross layers (a runtime error's hint reaches the CLI through the
//! worker's `NodeError`) and be printed once, in one place.

use std::error::Error;
use std::fmt::Write as _;

/// An error that can tell the user what to do about it.
///
/// `hint` answers for this error alone, not for its sources: [`render`] asks every cause in
/// the chain, so a wrapper that repeated its source's hint would print it twice. The one
/// exception is a transparent wrapper (`#[error(transparent)]`), which hides its source from
/// the chain and so must answer for it.
pub trait Hint {
    /// What to do, when there is something to suggest.
    fn hint(&self) -> Option<String>;
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    // Edit distance with transpositions catches `lrr`, `dve`; Jaro-Winkler catches
    // longer names with a shared prefix.
    let budget = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|c| {
            let d = strsim::osa_distance(word, c);
            let jw = strsim::jaro_winkler(word, c);
            (d <= budget || jw > 0.88).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `err` and its sources, outermost first.
pub fn chain<'e>(
    err: &'e (dyn Error + 'static),
) -> impl Iterator<Item = &'e (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

/// An error chain as people read it: `error: <first>`, one `  Caused by: <cause>` line per
/// cause, then each hint after a blank line. `hint_of` finds a cause's hint, usually by
/// downcasting it to the error types the caller knows (a `&dyn Error` cannot be asked for a
/// trait it may not implement). `causes` is the chain outermost first: [`chain`] of an
/// error, or `anyhow::Error::chain`.
///
/// A first message that starts with `error:` is already a complete diagnostic (a graph
/// error's rustc-style report, with its own hints under each caret) and is written as it is.
pub fn render<'e>(
    causes: impl IntoIterator<Item = &'e (dyn Error + 'static)>,
    hint_of: impl Fn(&(dyn Error + 'static)) -> Option<String>,
) -> String {
    let mut out = String::new();
    let mut hints = vec![];
    for (i, cause) in causes.into_iter().enumerate() {
        let text = cause.to_string();
        if i > 0 {
            let _ = writeln!(out, "  Caused by: {text}");
        } else if text.starts_with("error:") {
            out.push_str(&text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        } else {
            let _ = writeln!(out, "error: {text}");
        }
        hints.extend(hint_of(cause));
    }
    for h in hints {
        let _ = writeln!(out, "\nhint: {h}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Failure {
        message: &'static str,
        hint: Option<&'static str>,
        source: Option<Box<Failure>>,
    }

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)
        }
    }

    impl Error for Failure {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.source.as_deref().map(|s| s as &(dyn Error + 'static))
        }
    }

    impl Hint for Failure {
        fn hint(&self) -> Option<String> {
            self.hint.map(str::to_string)
        }
    }

    fn failure(message: &'static str, hint: Option<&'static str>) -> Failure {
        Failure {
            message,
            hint,
            source: None,
        }
    }

    fn caused(mut outer: Failure, inner: Failure) -> Failure {
        outer.source = Some(Box::new(inner));
        outer
    }

    fn hint_of(e: &(dyn Error + 'static)) -> Option<String> {
        e.downcast_ref::<Failure>().and_then(Hint::hint)
    }

    #[test]
    fn a_lone_error_is_one_line() {
        let e = failure("Failed to open `x`", None);
        assert_eq!(render(chain(&e), hint_of), "error: Failed to open `x`\n");
    }

    #[test]
    fn causes_follow_and_hints_come_last_after_a_blank_line() {
        let e = caused(
            failure("Failed to open the store `s`", Some("outer hint")),
            caused(
                failure("The store `s` is in use (pid 7)", Some("wait for it")),
                failure("Resource busy", None),
            ),
        );
        assert_eq!(
            render(chain(&e), hint_of),
            "error: Failed to open the store `s`\n  \
             Caused by: The store `s` is in use (pid 7)\n  \
             Caused by: Resource busy\n\
             \nhint: outer hint\n\
             \nhint: wait for it\n"
        );
    }

    #[test]
    fn a_hint_only_the_finder_knows_of_is_not_printed() {
        let e = failure("Failed", Some("fix it"));
        assert_eq!(render(chain(&e), |_| None), "error: Failed\n");
    }

    #[test]
    fn a_formatted_diagnostic_is_written_as_it_is() {
        let e = failure(
            "error: unknown node type `x`\n  --> g.toml:1:1\nhint: y\n",
            None,
        );
        assert_eq!(
            render(chain(&e), hint_of),
            "error: unknown node type `x`\n  --> g.toml:1:1\nhint: y\n"
        );
        let e = failure("error: no trailing newline", None);
        assert_eq!(render(chain(&e), hint_of), "error: no trailing newline\n");
    }

    #[test]
    fn only_the_first_message_can_be_a_formatted_diagnostic() {
        let e = caused(failure("Failed", None), failure("error: inner", None));
        assert_eq!(
            render(chain(&e), hint_of),
            "error: Failed\n  Caused by: error: inner\n"
        );
    }

    #[test]
    fn typos_find_their_word() {
        let names = ["lr", "dev", "text", "out", "in", "node", "source", "suffix"];
        for (typo, meant) in [
            ("lrr", "lr"),
            ("dve", "dev"),
            ("txt", "text"),
            ("ot", "out"),
            ("inn", "in"),
            ("nodes", "node"),
            ("sourse", "source"),
            ("sufix", "suffix"),
        ] {
            assert_eq!(did_you_mean(typo, names), Some(meant), "{typo}");
        }
    }

    #[test]
    fn a_long_name_with_a_shared_prefix_is_found_past_the_edit_budget() {
        // 5 edits against a budget of 3: Jaro-Winkler finds it.
        let word = "max_new_tok";
        assert!(strsim::osa_distance(word, "max_new_tokens_x") > word.len() / 3);
        assert_eq!(
            did_you_mean(word, ["max_new_tokens_x", "seed"]),
            Some("max_new_tokens_x")
        );
    }

    #[test]
    fn the_closest_candidate_wins_and_ties_keep_the_first() {
        assert_eq!(did_you_mean("cat", ["cart", "cat", "cot"]), Some("cat"));
        assert_eq!(did_you_mean("cat", ["cot", "cut"]), Some("cot"));
    }

    #[test]
    fn nothing_close_is_no_suggestion() {
        assert_eq!(did_you_mean("model", ["dataset", "seed"]), None);
        assert_eq!(did_you_mean("x", std::iter::empty()), None);
    }
}
