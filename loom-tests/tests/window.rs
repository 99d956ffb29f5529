//! loom models of the sliding windows.
#![cfg(resile_loom)]
