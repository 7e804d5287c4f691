//! Any text as `config/default.toml`: loading reports errors, never panics.
#![no_main]

use infergate::config::{LoadOptions, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dir) = tempfile_dir() else {
        return;
    };
    if std::fs::write(dir.join("default.toml"), text).is_ok() {
        let _ = load(&LoadOptions {
            config_dir: dir.clone(),
            ..LoadOptions::default()
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
});

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("infergate-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
