//! Per-item metric functions with lm-eval's (and SQuAD's) exact normalisations.

use std::collections::HashMap;

use crate::error::Result;
use crate::regex::PyRegex;
use crate::spec::Reducer;

/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// lm-eval's `exact_match` options, with the ignore-regexes compiled.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExactMatch {
    pub(crate) regexes_to_ignore: Vec<PyRegex>,
    pub(crate) ignore_case: bool,
    pub(crate) ignore_punctuation: bool,
    pub(crate) ignore_numbers: bool,
}

impl ExactMatch {
    fn normalize(&self, text: &str) -> Result<String> {
        let mut s = text.to_string();
        for regex in &self.regexes_to_ignore {
            s = regex.sub("", &s, 0).map_err(|e| crate::Error::RegexRun {
                pattern: regex.pattern().to_string(),
                source: Box::new(e),
            })?;
        }
        if self.ignore_case {
            s = s.to_lowercase();
        }
        if self.ignore_punctuation {
            s.retain(|c| !PUNCTUATION.contains(c));
        }
        if self.ignore_numbers {
            s.retain(|c| !c.is_ascii_digit());
        }
        Ok(s)
    }

    /// 1.0 when the prediction equals any gold after normalisation.
    pub(crate) fn score(&self, prediction: &str, golds: &[String]) -> Result<f64> {
        let p = self.normalize(prediction)?;
        for gold in golds {
            if self.normalize(gold)? == p {
                return Ok(1.0);
            }
        }
        Ok(0.0)
    }
}

/// SQuAD's answer normalisation: lowercase, drop punctuation, drop the articles a/an/the,
/// collapse whitespace.
pub fn squad_normalize(text: &str) -> String {
    static ARTICLES: std::sync::OnceLock<fancy_regex::Regex> = std::sync::OnceLock::new();
    let articles = ARTICLES
        .get_or_init(|| fancy_regex::Regex::new(r"\b(a|an|the)\b").expect("constant pattern"));
    let lower = text.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !PUNCTUATION.contains(*c))
        .collect();
    let no_articles = articles.replace_all(&no_punct, " ");
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SQuAD exact match against the best of several golds.
pub fn squad_exact_match(prediction: &str, golds: &[String]) -> f64 {
    let p = squad_normalize(prediction);
    if golds.iter().any(|g| squad_normalize(g) == p) {
        1.0
    } else {
        0.0
    }
}

/// SQuAD token F1 against the best of several golds. When either side normalises to nothing,
/// the score is 1 if both do and 0 otherwise (the SQuAD 2.0 script's rule).
pub fn squad_f1(prediction: &str, golds: &[String]) -> f64 {
    let pred = squad_normalize(prediction);
    let pred_tokens: Vec<&str> = pred.split_whitespace().collect();
    golds
        .iter()
        .map(|gold| {
            let gold = squad_normalize(gold);
            let gold_tokens: Vec<&str> = gold.split_whitespace().collect();
            if pred_tokens.is_empty() || gold_tokens.is_empty() {
                return f64::from(u8::from(pred_tokens == gold_tokens));
            }
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for t in &gold_tokens {
                *counts.entry(t).or_default() += 1;
            }
            let mut same = 0usize;
            for t in &pred_tokens {
                if let Some(c) = counts.get_mut(t)
                    && *c > 0
                {
                    *c -= 1;
                    same += 1;
                }
            }
            if same == 0 {
                return 0.0;
            }
            let precision = same as f64 / pred_tokens.len() as f64;
            let recall = same as f64 / gold_tokens.len() as f64;
            2.0 * precision * recall / (precision + recall)
        })
        .fold(0.0, f64::max)
}

/// Index of the largest value, the first one on ties (`numpy.argmax`). NaN never wins.
pub fn argmax(values: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &v) in values.iter().enumerate() {
        match best {
            _ if v.is_nan() => {}
            None => best = Some(i),
            Some(b) if v > values[b] => best = Some(i),
            _ => {}
        }
    }
    best
}

/// Unbiased pass@k from `n` samples of which `c` are correct: `1 - C(n-c, k) / C(n, k)`,
/// computed as a running product to stay finite.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if n < k || k == 0 {
        return f64::NAN;
    }
    if n - c < k {
        return 1.0;
    }
    let mut prod = 1.0;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    1.0 - prod
}

/// Combine one document's per-response scores.
pub fn reduce(reducer: Reducer, scores: &[f64]) -> f64 {
    if scores.is_empty() {
        return f64::NAN;
    }
    match reducer {
        Reducer::Mean => scores.iter().sum::<f64>() / scores.len() as f64,
        Reducer::Max => scores.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Reducer::Mode => {
            let mut best = scores[0];
            let mut best_count = 0;
            for &candidate in scores {
                let count = scores.iter().filter(|&&s| s == candidate).count();
                if count > best_count {
                    best = candidate;
                    best_count = count;
                }
            }
            best
        }
        Reducer::PassAtK { k } => {
            let correct = scores.iter().filter(|&&s| s >= 1.0).count();
            pass_at_k(scores.len(), correct, k)
        }
    }
}

/// Mean of the values.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Standard error of the mean with the sample standard deviation (lm-eval's `mean_stderr`);
/// `None` below two values (or for non-finite values).
pub fn mean_stderr(values: &[f64]) -> Option<f64> {
    dag_metrics::mean_stderr(values).ok()
}

/// lm-eval's pooled standard error of a size-weighted group mean; `None` when the members
/// have no more items than there are members.
pub fn pooled_stderr(stderrs: &[f64], sizes: &[usize]) -> Option<f64> {
    dag_metrics::pooled_sample_stderr(stderrs, sizes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn gsm8k_exact_match_normalisation() {
        let em = ExactMatch {
            regexes_to_ignore: [",", "\\$", "(?s).*#### ", "\\.$"]
                .iter()
                .map(|p| PyRegex::new(p).unwrap())
                .collect(),
            ignore_case: true,
            ..Default::default()
        };
        let gold = s(&["Janet sells 9 eggs.\nShe makes $18.\n#### 1,018"]);
        assert_eq!(em.score("1018", &gold).unwrap(), 1.0);
        assert_eq!(em.score("$1,018.", &gold).unwrap(), 1.0);
        assert_eq!(em.score("1018.5", &gold).unwrap(), 0.0);
    }

    #[test]
    fn squad_scores() {
        assert_eq!(squad_normalize("The  Eiffel-Tower!"), "eiffeltower");
        assert_eq!(squad_exact_match("the Beatles", &s(&["Beatles", "x"])), 1.0);
        let f1 = squad_f1("Paris France", &s(&["Paris", "London"]));
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(squad_f1("", &s(&["the"])), 1.0);
        assert_eq!(squad_f1("x", &s(&["y"])), 0.0);
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[-1.0, -0.5, -0.5]), Some(1));
        assert_eq!(argmax(&[f64::NAN, -3.0]), Some(1));
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn pass_at_k_matches_the_closed_form() {
        // n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10.
        assert!((pass_at_k(5, 2, 2) - 0.7).abs() < 1e-12);
        assert_eq!(pass_at_k(5, 0, 2), 0.0);
        assert_eq!(pass_at_k(5, 4, 2), 1.0);
        assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12);
        assert!(pass_at_k(1, 1, 2).is_nan());
    }

    #[test]
    fn reducers() {
        let v = [1.0, 0.0, 1.0, 0.0, 0.0];
        assert_eq!(reduce(Reducer::Mean, &v), 0.4);
        assert_eq!(reduce(Reducer::Max, &v), 1.0);
        assert_eq!(reduce(Reducer::Mode, &v), 0.0);
        assert_eq!(reduce(Reducer::Mode, &[1.0, 0.0]), 1.0);
        assert!((reduce(Reducer::PassAtK { k: 2 }, &v) - 0.7).abs() < 1e-12);
    }

    #[test]
    fn stderr_and_pooling() {
        let se = mean_stderr(&[1.0, 0.0, 1.0, 1.0]).unwrap();
        assert!((se - 0.25).abs() < 1e-12);
        assert!(mean_stderr(&[1.0]).is_none());
        // Pooling equal halves of one sample gives back nearly the whole sample's stderr.
        let a = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0];
        let pooled = pooled_stderr(
            &[mean_stderr(&a[..3]).unwrap(), mean_stderr(&a[3..]).unwrap()],
            &[3, 3],
        )
        .unwrap();
        assert!(pooled > 0.0 && pooled < 0.3);
    }
}
