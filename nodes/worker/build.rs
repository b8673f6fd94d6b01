//! Bakes libtorch's directory into the rpath of dag-worker, so they
//! run without `LD_LIBRARY_PATH`. torch-sys publishes that directory as `DEP_TCH_LIBTORCH_LIB`
//! (its `links = "tch"` metadata), visible here because torch-sys is a direct dependency.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
