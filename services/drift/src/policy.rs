//! Retraining policies: definitions, decisions and the scheduler.
