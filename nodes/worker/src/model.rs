//! Models as the model nodes hand them on: a `model.json` reference, loaded by the runtime,
//! with what a finetune checkpoint adds to its base (an adapter or trained weights).

use std::path::Path;

use dag_protocol::NodeError;
use dag_protocol::models::ModelRef;
use dag_runtime::{LoadOptions, Model};

use crate::failure::caused;

/// Loads the model a `model.json` reference (or a checkpoint folder) describes.
pub fn load_model(dir: &Path) -> Result<Model, NodeError> {
    let r = ModelRef::read(dir)?;
    let location = r.location.as_str();
    let device = r
        .device
        .as_deref()
        .unwrap_or("auto")
        .parse()
        .map_err(|e| caused("Bad `device`", &e))?;
    let dtype = match r.dtype.as_deref().unwrap_or("auto") {
        "auto" => None,
        d => Some(d.parse().map_err(|e| caused("Bad `dtype`", &e))?),
    };
    let mut model = Model::from_reference(location, LoadOptions { device, dtype })
        .map_err(|e| caused(format!("Failed to load the model `{location}`"), &e))?;
    apply_checkpoint(&mut model, dir, &r)?;
    Ok(model)
}

/// Applies what a checkpoint's `model.json` adds to its base: a LoRA adapter folder
/// (`adapter`) or trained full weights (`weights`), both relative to the checkpoint folder.
pub fn apply_checkpoint(model: &mut Model, dir: &Path, r: &ModelRef) -> Result<(), NodeError> {
    if let Some(a) = &r.adapter {
        let path = dir.join(a);
        model.load_adapter(&path).map_err(|e| {
            caused(
                format!("Failed to load the adapter `{}`", path.display()),
                &e,
            )
        })?;
    }
    if let Some(w) = &r.weights {
        let path = dir.join(w);
        model.load_weights(&path).map_err(|e| {
            caused(
                format!("Failed to load the weights `{}`", path.display()),
                &e,
            )
        })?;
    }
    Ok(())
}
