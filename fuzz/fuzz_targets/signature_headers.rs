//! AFL target: see `hookcast_fuzz::signature_headers`.
fn main() {
    afl::fuzz!(|data: &[u8]| hookcast_fuzz::signature_headers(data));
}
