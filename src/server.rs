//! HTTP endpoints of `authsync run` (placeholder; being written).
