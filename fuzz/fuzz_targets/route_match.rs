//! Route paths: the first line is a route pattern, the second a request path.
#![no_main]

use hookcast::ingest::route::PathPattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, path) = text.split_once('\n').unwrap_or((&text, "/"));
    if let Ok(p) = PathPattern::parse(pattern) {
        let _ = p.matches(path);
    }
});
