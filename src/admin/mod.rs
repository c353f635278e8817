//! The control plane: the admin API on a Unix socket ([`protocol`], served by the daemon) and
//! `target-admin`'s client side. It talks to the reactors through shared state and channels and
//! never sits on the data path.

pub mod apply;
pub mod client;
pub mod format;
pub mod pr;
pub mod protocol;
pub mod server;
pub mod volume;
