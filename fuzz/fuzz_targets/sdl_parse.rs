//! Fuzzes the SDL parser: any bytes must give a value or an error, never a panic, and a file
//! that parses must render and hash the same way twice.
//!
//! Run: `cargo fuzz run sdl_parse` (seed it with `examples/*.yaml`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sdl) = kumo_sdl::parse(text) {
        let groups = kumo_sdl::akash::groups_json(sdl.groups());
        let manifest = kumo_sdl::akash::manifest_json(sdl.manifest());
        assert_eq!(sdl.manifest_hash(), kumo_sdl::parse(text).unwrap().manifest_hash());
        assert!(groups.is_array() && manifest.is_array());
    }
});
