//! The retry budget scenario (added with the retry budget).

use crate::Report;

pub(crate) fn run(_report: &mut Report) {}
