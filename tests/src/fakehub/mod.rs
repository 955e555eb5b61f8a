//! The fake Brightspace Data Hub: API host, auth host and signed storage host.
