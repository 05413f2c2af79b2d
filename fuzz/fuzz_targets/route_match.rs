//! AFL target: see `hookcast_fuzz::route_match`.
fn main() {
    afl::fuzz!(|data: &[u8]| hookcast_fuzz::route_match(data));
}
