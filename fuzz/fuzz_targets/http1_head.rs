//! AFL target: see `hookcast_fuzz::http1_head`.
fn main() {
    afl::fuzz!(|data: &[u8]| hookcast_fuzz::http1_head(data));
}
