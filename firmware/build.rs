//! Puts memory.x where cortex-m-rt's link.x looks for it, and passes the
//! linker scripts (cortex-m-rt's link.x, defmt's defmt.x) for the bare-metal
//! binary only, so this works whether or not .cargo/config.toml was read.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    // defmt compiles in only `error` logs unless DEFMT_LOG says otherwise;
    // the firmware logs at `info` by default. Set here (not in
    // .cargo/config.toml) so it holds however cargo is invoked.
    println!("cargo:rerun-if-env-changed=DEFMT_LOG");
    if env::var_os("DEFMT_LOG").is_none() {
        println!("cargo:rustc-env=DEFMT_LOG=info");
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
        println!("cargo:rustc-link-arg-bins=--nmagic");
    }
}
