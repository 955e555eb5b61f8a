//! bds-fetch.
fn main() {}
