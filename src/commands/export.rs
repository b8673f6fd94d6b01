//! `dag export`: an artifact copied out of the store.

use super::*;

/// `dag export TARGET DEST`.
pub(super) fn export(explicit: Option<&Path>, a: &crate::cli::ExportArgs) -> Result<Exit> {
    let store = open_reader(explicit, a.graph.as_deref())?;
    let t = dag_engine::Target::resolve(&store, &a.target, a.graph.as_deref())?;
    let d = t.digest;
    if a.dest.exists() {
        bail!(Hinted::new(
            format!("`{}` already exists", a.dest.display()),
            "choose a new path; export never overwrites"
        ));
    }
    match a.format {
        crate::cli::ExportFormat::Dag => store.export(&d, &a.dest)?,
        crate::cli::ExportFormat::Inspect => export_inspect(&store, &t, &a.dest)?,
    }
    outln!("exported {} to {}", d.short(), a.dest.display());
    Ok(Exit::Success)
}
