//! The integration tests: one binary (as ripgrep has them), one module per command
//! or concern. Each runs the real `thoth` binary against real child processes and real
//! local HTTP servers; `util` holds what they share.

mod util;

mod cli;
mod doctor;
mod fleet;
mod inspect;
mod otlp;
mod real_servers;
mod remote;
mod replicas;
mod run;
mod scan;
mod tls;
mod user_approval;
mod wrap;
