//! Cron schedules (policies and pipeline triggers).
