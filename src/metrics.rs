//! Counters the daemon keeps about itself (sessions, commands, bytes). Exported over HTTP in a
//! later issue; for now read by logs and tests.
