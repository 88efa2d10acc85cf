//! Test capture writer (placeholder).
