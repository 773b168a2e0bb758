//! Embeds the built pixel shim (`build/shim/p.js`, `build/shim/p.wasm`, written by
//! `make shim`) so the Worker serves it from the shop's own domain. When the shim has not
//! been built (e.g. `cargo clippy` on a fresh clone) empty files are embedded and the
//! Worker answers those routes with a JSON 404 that says so.

use std::path::Path;

fn main() {
    let shim_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/shim");
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    for name in ["p.js", "p.wasm"] {
        let src = shim_dir.join(name);
        println!("cargo:rerun-if-changed={}", src.display());
        let bytes = std::fs::read(&src).unwrap_or_default();
        std::fs::write(Path::new(&out).join(name), bytes).expect("write embedded shim");
    }
    println!("cargo:rerun-if-changed={}", shim_dir.display());
}
