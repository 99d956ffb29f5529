//! Differential fuzzing of the sliding windows against plain sequential models.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|_data: &[u8]| {
    // Filled in by the windows work.
});
