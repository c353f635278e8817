//! The control plane: the admin API on a Unix socket and `target-admin`'s client side.
//! It talks to the reactors through channels and never sits on the data path.
