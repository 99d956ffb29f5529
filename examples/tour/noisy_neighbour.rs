//! The bulkhead scenario (added with the bulkhead).

use crate::Report;

pub(crate) fn run(_report: &mut Report) {}
