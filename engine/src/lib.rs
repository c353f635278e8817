//! ringsan-engine
