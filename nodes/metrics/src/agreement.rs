//! Inter-rater agreement: Cohen's kappa for two raters (scikit-learn's `cohen_kappa_score`,
//! unweighted) and Fleiss' kappa for a fixed number of raters per item (statsmodels'
//! `fleiss_kappa(table, method='fleiss')`), so that several judges grading the same replies
//! can be compared beyond their mean scores.
//!
//! Where the reference libraries return NaN (kappa is 0/0 because chance agreement is
//! already 1), these functions return an error naming the case instead: a NaN would flow
//! silently into means and plots, while the caller can report the raw agreement.

use std::collections::BTreeMap;

use crate::error::{MetricError, Result, check_same_len, invalid};

/// Cohen's kappa between two raters who labelled the same items, item `i` being `a[i]` and
/// `b[i]`; equal to scikit-learn's `cohen_kappa_score(a, b)` (unweighted).
///
/// Labels are any ordered type (grade letters, `&str`, integers); the categories are the
/// labels either rater used. The value is `1 - sum(off-diagonal observed) / sum(off-diagonal
/// expected)`, computed in scikit-learn's order so that results agree to rounding.
///
/// Errors: [`MetricError::Empty`] without items, [`MetricError::LengthMismatch`] when the
/// raters labelled different numbers of items, and [`MetricError::InvalidParameter`] (named
/// `labels`) when both raters gave every item one and the same label: the expected agreement
/// is then 1 and kappa is 0/0 (scikit-learn returns NaN with an `UndefinedMetricWarning`).
pub fn cohen_kappa<L: Ord>(a: &[L], b: &[L]) -> Result<f64> {
    check_same_len("a", a.len(), "b", b.len())?;
    if a.is_empty() {
        return Err(MetricError::Empty {
            what: "cohen_kappa",
        });
    }
    let mut categories: BTreeMap<&L, usize> = a.iter().chain(b).map(|l| (l, 0)).collect();
    for (index, slot) in categories.values_mut().enumerate() {
        *slot = index;
    }
    let k = categories.len();
    let mut confusion = vec![0.0f64; k * k];
    for (x, y) in a.iter().zip(b) {
        confusion[categories[x] * k + categories[y]] += 1.0;
    }
    // scikit-learn: sum0 = column sums (rater b), sum1 = row sums (rater a),
    // expected = outer(sum0, sum1) / n.
    let sum0: Vec<f64> = (0..k)
        .map(|j| (0..k).map(|i| confusion[i * k + j]).sum())
        .collect();
    let sum1: Vec<f64> = (0..k)
        .map(|i| confusion[i * k..(i + 1) * k].iter().sum())
        .collect();
    let n: f64 = sum0.iter().sum();
    let mut observed_off = 0.0;
    let mut expected_off = 0.0;
    for i in 0..k {
        for j in 0..k {
            if i != j {
                observed_off += confusion[i * k + j];
                expected_off += sum0[i] * sum1[j] / n;
            }
        }
    }
    // A sum of non-negative terms is exactly zero only when every term is.
    if expected_off == 0.0 {
        return Err(invalid(
            "labels",
            format!(
                "{} items, all given one and the same label by both raters",
                a.len()
            ),
            "Cohen's kappa is undefined (0/0) when the expected agreement is 1; \
             report the raw agreement (1.0) for this set instead",
        ));
    }
    Ok(1.0 - observed_off / expected_off)
}

/// Fleiss' kappa of a table whose row `i` counts, per category (column), how many raters
/// put item `i` in that category; every row must sum to the same number of raters (at
/// least 2). Equal to statsmodels' `fleiss_kappa(table, method='fleiss')`:
/// `(P_bar - P_e) / (1 - P_e)` with `P_bar` the mean per-item agreement and `P_e` the sum of
/// the squared category proportions. Build the table from raw labels with
/// [`aggregate_raters`].
///
/// Errors: [`MetricError::Empty`] without items or categories; [`MetricError::InvalidParameter`]
/// named `table` when rows have different lengths or rater counts, when there are fewer than
/// 2 raters per item, or when every rating falls in one category (`P_e = 1`, kappa is 0/0;
/// statsmodels returns NaN there).
pub fn fleiss_kappa(table: &[Vec<usize>]) -> Result<f64> {
    let Some(first) = table.first() else {
        return Err(MetricError::Empty {
            what: "fleiss_kappa",
        });
    };
    if first.is_empty() {
        return Err(MetricError::Empty {
            what: "fleiss_kappa (no categories)",
        });
    }
    let n_cat = first.len();
    let n_rat: usize = first.iter().sum();
    for (i, row) in table.iter().enumerate() {
        if row.len() != n_cat {
            return Err(invalid(
                "table",
                format!("row {i} with {} categories (row 0 has {n_cat})", row.len()),
                "every row must have one count per category, in the same column order",
            ));
        }
        let raters: usize = row.iter().sum();
        if raters != n_rat {
            return Err(invalid(
                "table",
                format!("row {i} with {raters} raters (row 0 has {n_rat})"),
                "every item must be rated by the same number of raters; \
                 drop or complete the items with missing ratings",
            ));
        }
    }
    if n_rat < 2 {
        return Err(invalid(
            "table",
            format!("{n_rat} rater(s) per item"),
            "agreement needs at least 2 raters per item",
        ));
    }
    let n_sub = table.len() as f64;
    let r = n_rat as f64;
    let n_total = n_sub * r;
    let p_e: f64 = (0..n_cat)
        .map(|j| {
            let p = table.iter().map(|row| row[j] as f64).sum::<f64>() / n_total;
            p * p
        })
        .sum();
    let p_bar = table
        .iter()
        .map(|row| {
            let squares: f64 = row.iter().map(|&c| (c * c) as f64).sum();
            (squares - r) / (r * (r - 1.0))
        })
        .sum::<f64>()
        / n_sub;
    // P_e is a sum of squares of proportions that sum to 1: it reaches 1 exactly when a
    // single category holds every rating, and the rounding then leaves it at exactly 1.0.
    if p_e >= 1.0 {
        return Err(invalid(
            "table",
            format!("all {} ratings in one category", n_sub * r),
            "Fleiss' kappa is undefined (0/0) when the expected agreement is 1; \
             report the raw agreement (1.0) for this set instead",
        ));
    }
    Ok((p_bar - p_e) / (1.0 - p_e))
}

/// Turns per-item rating lists (row `i` = the labels the raters gave item `i`, in any
/// order) into the count table [`fleiss_kappa`] takes, like statsmodels'
/// `aggregate_raters(data)`: returns the table and its categories (the sorted distinct
/// labels, one per column).
///
/// Errors: [`MetricError::Empty`] without items or ratings, and
/// [`MetricError::InvalidParameter`] named `ratings` when items have different numbers of
/// ratings.
pub fn aggregate_raters<L: Ord + Clone>(ratings: &[Vec<L>]) -> Result<(Vec<Vec<usize>>, Vec<L>)> {
    let Some(first) = ratings.first() else {
        return Err(MetricError::Empty {
            what: "aggregate_raters",
        });
    };
    if first.is_empty() {
        return Err(MetricError::Empty {
            what: "aggregate_raters (no ratings per item)",
        });
    }
    if let Some((i, row)) = ratings
        .iter()
        .enumerate()
        .find(|(_, row)| row.len() != first.len())
    {
        return Err(invalid(
            "ratings",
            format!(
                "item {i} with {} ratings (item 0 has {})",
                row.len(),
                first.len()
            ),
            "every item must be rated by the same number of raters",
        ));
    }
    let mut columns: BTreeMap<&L, usize> = ratings.iter().flatten().map(|l| (l, 0)).collect();
    for (index, slot) in columns.values_mut().enumerate() {
        *slot = index;
    }
    let table = ratings
        .iter()
        .map(|row| {
            let mut counts = vec![0; columns.len()];
            for label in row {
                counts[columns[label]] += 1;
            }
            counts
        })
        .collect();
    let categories = columns.into_keys().cloned().collect();
    Ok((table, categories))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected value below comes from scikit-learn 1.9.1 / statsmodels 0.15.0, by the
    // Python line quoted beside it (`from sklearn.metrics import cohen_kappa_score`,
    // `from statsmodels.stats.inter_rater import fleiss_kappa, aggregate_raters`).
    const TOL: f64 = 1e-12;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[track_caller]
    fn close(got: f64, want: f64) {
        assert!((got - want).abs() < TOL, "got {got}, want {want}");
    }

    #[test]
    fn cohen_three_categories_with_disagreement() {
        // cohen_kappa_score(list("CCIPCIIPCC"), list("CIIPPICPCC"))
        let k = cohen_kappa(&chars("CCIPCIIPCC"), &chars("CIIPPICPCC")).unwrap();
        close(k, 0.5384615384615384);
    }

    #[test]
    fn cohen_perfect_agreement() {
        // cohen_kappa_score(list("CIPCI"), list("CIPCI"))
        close(cohen_kappa(&chars("CIPCI"), &chars("CIPCI")).unwrap(), 1.0);
    }

    #[test]
    fn cohen_worse_than_chance_is_negative() {
        // cohen_kappa_score([0,1,0,1,0,1,1,0], [1,0,1,0,0,1,0,1])
        let k = cohen_kappa(&[0, 1, 0, 1, 0, 1, 1, 0], &[1, 0, 1, 0, 0, 1, 0, 1]).unwrap();
        close(k, -0.5);
    }

    #[test]
    fn cohen_label_used_by_one_rater_only() {
        // cohen_kappa_score(list("CCCCIIC"), list("CCPCIPC"))
        let a = ["C", "C", "C", "C", "I", "I", "C"];
        let b = ["C", "C", "P", "C", "I", "P", "C"];
        close(cohen_kappa(&a, &b).unwrap(), 0.4814814814814815);
    }

    #[test]
    fn cohen_degenerate_inputs_are_errors() {
        // cohen_kappa_score(list("CCC"), list("CCC")) is nan with an UndefinedMetricWarning.
        let err = cohen_kappa(&chars("CCC"), &chars("CCC")).unwrap_err();
        assert!(err.to_string().contains("undefined"), "{err}");
        assert!(matches!(
            cohen_kappa::<char>(&[], &[]),
            Err(MetricError::Empty { .. })
        ));
        assert!(matches!(
            cohen_kappa(&chars("CI"), &chars("C")),
            Err(MetricError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn fleiss_1971_table() {
        // Fleiss (1971), 10 items x 14 raters x 5 categories:
        // fleiss_kappa([[0,0,0,0,14],[0,2,6,4,2],[0,0,3,5,6],[0,3,9,2,0],[2,2,8,1,1],
        //   [7,7,0,0,0],[3,2,6,3,0],[2,5,3,2,2],[6,5,2,1,0],[0,2,2,3,7]], method='fleiss')
        let table = vec![
            vec![0, 0, 0, 0, 14],
            vec![0, 2, 6, 4, 2],
            vec![0, 0, 3, 5, 6],
            vec![0, 3, 9, 2, 0],
            vec![2, 2, 8, 1, 1],
            vec![7, 7, 0, 0, 0],
            vec![3, 2, 6, 3, 0],
            vec![2, 5, 3, 2, 2],
            vec![6, 5, 2, 1, 0],
            vec![0, 2, 2, 3, 7],
        ];
        close(fleiss_kappa(&table).unwrap(), 0.20993070442195522);
    }

    #[test]
    fn fleiss_three_categories_with_disagreement() {
        // fleiss_kappa([[2,1,0],[0,3,0],[1,1,1],[3,0,0],[0,2,1]], method='fleiss')
        let table = vec![
            vec![2, 1, 0],
            vec![0, 3, 0],
            vec![1, 1, 1],
            vec![3, 0, 0],
            vec![0, 2, 1],
        ];
        close(fleiss_kappa(&table).unwrap(), 0.22794117647058817);
    }

    #[test]
    fn fleiss_perfect_and_negative() {
        // fleiss_kappa([[3,0,0],[0,3,0],[0,0,3],[3,0,0]], method='fleiss')
        let perfect = vec![vec![3, 0, 0], vec![0, 3, 0], vec![0, 0, 3], vec![3, 0, 0]];
        close(fleiss_kappa(&perfect).unwrap(), 1.0);
        // fleiss_kappa([[1,1],[1,1],[1,1]], method='fleiss')
        let split = vec![vec![1, 1], vec![1, 1], vec![1, 1]];
        close(fleiss_kappa(&split).unwrap(), -1.0);
    }

    #[test]
    fn fleiss_from_label_lists() {
        // t, cats = aggregate_raters(np.array([list("CCI"), list("IIP"), list("CPI"),
        //   list("PPP")])); fleiss_kappa(t, method='fleiss')
        // gives t = [[2,1,0],[0,2,1],[1,1,1],[0,0,3]], cats = ['C','I','P'].
        let ratings = vec![chars("CCI"), chars("IIP"), chars("CPI"), chars("PPP")];
        let (table, categories) = aggregate_raters(&ratings).unwrap();
        assert_eq!(categories, vec!['C', 'I', 'P']);
        assert_eq!(
            table,
            vec![vec![2, 1, 0], vec![0, 2, 1], vec![1, 1, 1], vec![0, 0, 3]]
        );
        close(fleiss_kappa(&table).unwrap(), 0.10638297872340421);
    }

    #[test]
    fn fleiss_degenerate_inputs_are_errors() {
        // fleiss_kappa([[3,0],[3,0]], method='fleiss') is nan ("invalid value encountered").
        let err = fleiss_kappa(&[vec![3, 0], vec![3, 0]]).unwrap_err();
        assert!(err.to_string().contains("undefined"), "{err}");
        let err = fleiss_kappa(&[vec![2, 1], vec![1, 1]]).unwrap_err();
        assert!(err.to_string().contains("row 1 with 2 raters"), "{err}");
        assert!(fleiss_kappa(&[vec![1, 0], vec![0, 1]]).is_err());
        assert!(fleiss_kappa(&[vec![1, 1], vec![2]]).is_err());
        assert!(matches!(fleiss_kappa(&[]), Err(MetricError::Empty { .. })));
        assert!(matches!(
            aggregate_raters::<char>(&[]),
            Err(MetricError::Empty { .. })
        ));
        assert!(aggregate_raters(&[chars("CC"), chars("C")]).is_err());
    }
}
