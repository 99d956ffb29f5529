//! Shared harness for resile's benches: threads kept alive across samples, started together.
