//! The event log: the envelope log of every service, relayed into one table.
