//! Template parsing and rendering: the first line is the template, the rest the body.
#![no_main]

use hookcast::template::{Input, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (src, body) = text.split_once('\n').unwrap_or((&text, ""));
    let Ok(t) = Template::parse(src) else { return };
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let headers = http::HeaderMap::new();
    let params = vec![("room".to_owned(), "a".to_owned())];
    let _ = t.render(&Input {
        path_params: &params,
        query: Some(body),
        headers: &headers,
        body: body.as_bytes(),
        json: json.as_ref(),
        response: None,
        identity: json.as_ref(),
    });
});
