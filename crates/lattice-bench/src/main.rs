//! `lattice-bench`: reproducible benchmarks (lands with the benchmark issue).
fn main() {}
