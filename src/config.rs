//! The daemon's configuration: the TOML file format, its validation, and the embedded default.
