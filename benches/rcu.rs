//! RCU read-side benchmarks (written in the next commit).
fn main() {}
