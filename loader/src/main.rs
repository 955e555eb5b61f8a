//! bds-load.
fn main() {}
