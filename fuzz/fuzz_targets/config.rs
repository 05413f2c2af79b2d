//! AFL target: see `hookcast_fuzz::config`.
fn main() {
    afl::fuzz!(|data: &[u8]| hookcast_fuzz::config(data));
}
