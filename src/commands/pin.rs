//! `dag pin` and `dag unpin`: artifacts gc keeps, by name.

use super::*;

/// `dag pin TARGET NAME`.
pub(super) fn pin(explicit: Option<&Path>, a: &crate::cli::PinArgs) -> Result<Exit> {
    let store = open(explicit, a.graph.as_deref())?;
    let d = resolve(&store, &a.target, a.graph.as_deref())?;
    store.pin(&a.name, &d)?;
    outln!("pinned {} as {}", d.short(), a.name);
    Ok(Exit::Success)
}

/// `dag unpin NAME`.
pub(super) fn unpin(explicit: Option<&Path>, a: &crate::cli::UnpinArgs) -> Result<Exit> {
    let store = open(explicit, None)?;
    if !store.unpin(&a.name)? {
        bail!("no pin named `{}`", a.name);
    }
    Ok(Exit::Success)
}
