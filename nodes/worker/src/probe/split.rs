//! A split's activations, loaded for training or scoring.

use dag_protocol::NodeError;
use tch::{Kind, Tensor};

use crate::activations::Layer;
use crate::failure::caused;
use crate::scores::{group_of, parse_label};

/// Rows per block when a whole split is reduced or scored (see [`Split::by_rows`]).
const ROW_BLOCK: i64 = 256;

/// A split's inputs, ready for training or scoring.
pub struct Split {
    /// `train`, `validation` or `test`.
    pub name: String,
    /// `[n, T, d]` f32, exactly zero outside the mask.
    pub x: Tensor,
    /// `[n, T]` bool.
    pub mask: Tensor,
    /// Labels.
    pub y: Vec<bool>,
    /// Dataset row index per row.
    pub rows: Vec<usize>,
    /// Each row's `group_column` value, when the node has one.
    pub groups: Option<Vec<String>>,
}

impl Split {
    /// Builds a split from raw tensors, zeroing whatever the padding holds.
    pub fn new(name: &str, x: Tensor, mask: Tensor, y: Vec<bool>, rows: Vec<usize>) -> Split {
        let mask = mask.to_kind(Kind::Bool);
        // In place: a split's activations are the largest thing a probe node holds.
        let mut x = x.to_kind(Kind::Float);
        let _ = x.masked_fill_(&mask.logical_not().unsqueeze(-1), 0.0);
        Split {
            name: name.into(),
            x,
            mask,
            y,
            rows,
            groups: None,
        }
    }

    pub(super) fn from_layer(
        name: &str,
        layer: Layer,
        label_column: &str,
        group_column: Option<&str>,
    ) -> Result<Split, NodeError> {
        let mut y = Vec::with_capacity(layer.rows.len());
        for (row, cols) in &layer.rows {
            let v = cols.get(label_column).ok_or_else(|| {
                NodeError::msg(format!(
                    "The {name} activations carry no column `{label_column}` (row {row})"
                ))
                .hint(format!(
                    "columns carried: {}; set `label_column`",
                    cols.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            y.push(parse_label(v).ok_or_else(|| {
                NodeError::msg(format!(
                    "Row {row} of {name}: label `{v}` in `{label_column}` is not 0/1 or a boolean"
                ))
                .hint("map labels to 0/1 with the relabel node's `map`")
            })?);
        }
        let groups = group_column
            .map(|column| {
                layer
                    .rows
                    .iter()
                    .map(|(row, cols)| {
                        group_of(
                            cols,
                            column,
                            &format!("Row {row} of the {name} activations"),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let rows = layer.rows.iter().map(|(r, _)| *r).collect();
        let mut split = Split::new(name, layer.activations, layer.mask, y, rows);
        split.groups = groups;
        Ok(split)
    }

    pub(super) fn n(&self) -> usize {
        self.y.len()
    }

    pub(super) fn dim(&self) -> i64 {
        self.x.size()[2]
    }

    /// `f` over consecutive blocks of at most [`ROW_BLOCK`] rows of `x` and `mask`, its
    /// results concatenated along the first dimension. Whole-split arithmetic would make
    /// temporaries as large as the split, the largest thing a probe node holds.
    pub(super) fn by_rows(&self, mut f: impl FnMut(&Tensor, &Tensor) -> Tensor) -> Tensor {
        let n = self.n() as i64;
        let parts: Vec<Tensor> = (0..n)
            .step_by(ROW_BLOCK as usize)
            .map(|start| {
                let len = ROW_BLOCK.min(n - start);
                f(
                    &self.x.narrow(0, start, len),
                    &self.mask.narrow(0, start, len),
                )
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// Mean over real tokens, `[n, d]` row-major f64. Padding is exactly zero (see
    /// [`Split::new`]), so the sum over all positions is the sum over real ones.
    pub(super) fn mean_features(&self) -> Result<Vec<f64>, NodeError> {
        let count = self
            .mask
            .to_kind(Kind::Double)
            .sum_dim_intlist(-1, false, Kind::Double);
        if bool::try_from(count.eq(0.0).any()).unwrap_or(false) {
            return Err(NodeError::msg(format!(
                "A row of the {} activations has no real token",
                self.name
            ))
            .hint("the extraction stored an empty row; rerun extract-activations"));
        }
        let sums = self.by_rows(|x, _| x.sum_dim_intlist(1, false, Kind::Double));
        let mean = sums / count.unsqueeze(-1);
        Vec::<f64>::try_from(mean.flatten(0, -1))
            .map_err(|e| caused("Failed to read mean activations", &e))
    }
}
