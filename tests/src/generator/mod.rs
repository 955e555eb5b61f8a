//! Deterministic, streaming generator of realistic extract histories and their oracle.
