//! Standalone fake Data Hub.
fn main() {}
