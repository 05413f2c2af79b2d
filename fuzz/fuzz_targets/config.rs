//! The config loader: never panics, and every error has a 1-based location.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(hookcast::config::Error::Invalid { diagnostics, .. }) =
        hookcast::config::from_yaml_with_env("f.yaml", text, &|_| None)
    {
        assert!(diagnostics.iter().all(|d| d.line >= 1 && d.column >= 1));
    }
});
