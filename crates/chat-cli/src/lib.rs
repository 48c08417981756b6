//! The `chat` command's library: the command line ([`cli`]), the commands
//! ([`commands::run`]), profiles and secrets ([`profile`]), output
//! ([`output`]) and the one-command demo ([`demo`]). The binary is a thin
//! `main` around [`commands::run`]; see `docs/CLI.md` for the user's guide.

pub mod actions;
pub mod agent;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod daemon_http;
pub mod demo;
pub mod devices;
pub mod error;
pub mod events;
pub mod groups;
pub mod lock;
pub mod manage;
pub mod output;
pub mod profile;
pub mod results;
pub mod rpc;
pub mod send;
pub mod session;
pub mod show;
pub mod sink;
