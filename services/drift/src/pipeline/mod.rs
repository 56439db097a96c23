//! Pipelines: definitions, runs, the step worker and the timeline.

pub mod expr;
