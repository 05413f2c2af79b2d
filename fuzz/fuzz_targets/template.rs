//! AFL target: see `hookcast_fuzz::template`.
fn main() {
    afl::fuzz!(|data: &[u8]| hookcast_fuzz::template(data));
}
