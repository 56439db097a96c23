//! Reference substitution and condition expressions of pipeline steps.
