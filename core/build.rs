//! Export the v1 plugin registry functions (`core_register_framing`,
//! `core_framing`) from the executable, as the original's `-export-dynamic`
//! did: v1 framing plugins call them from their ELF constructors, so they
//! must resolve when the plugin is dlopen'd. Only these two symbols are
//! exported (`exports.dynlist`), not the whole binary.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let list = std::path::Path::new(&dir).join("exports.dynlist");
    println!("cargo:rerun-if-changed=exports.dynlist");
    println!("cargo:rerun-if-changed=build.rs");
    match std::env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("macos" | "ios") => {
            for sym in ["core_register_framing", "core_framing"] {
                println!("cargo:rustc-link-arg-bins=-Wl,-exported_symbol,_{sym}");
            }
        }
        Ok("windows") => {}
        _ => println!(
            "cargo:rustc-link-arg-bins=-Wl,--dynamic-list={}",
            list.display()
        ),
    }
}
