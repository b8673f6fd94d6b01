//! `dag`: run, inspect and maintain dataflow graphs of AI-safety research pipelines.
//!
//! The binary only parses arguments, picks a command and maps its outcome to an exit
//! code: 0 success, 1 a node failed, 2 bad input (graph, arguments, store), 130
//! cancelled by Ctrl-C, 143 stopped by SIGTERM. Everything else lives in the library crates.

// First: the output macros are used by the modules below.
#[macro_use]
mod render;
mod cli;
mod commands;
mod locate;

use std::process::ExitCode;

use clap::Parser;

// Planning a large graph is allocation-bound (keys, records, small maps); mimalloc
// takes about a fifth off a no-op run of 10,000 nodes.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match commands::dispatch(args) {
        Ok(code) => code.into(),
        Err(e) => {
            render::error(&e);
            render::Exit::BadInput.into()
        }
    }
}
