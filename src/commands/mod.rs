//! The commands, one file each: each builds library objects from arguments and prints the
//! result. `dispatch` picks one; the helpers here open the store and load graphs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use dag_engine::{
    Event, Graph, LoadOptions, Memo, MemoKey, NodeState, RunMode, RunOptions, Runner,
};
use dag_store::{Digest, Layout, NodeRunStatus, RunRecord, RunStatus, Store};
use serde_json::json;

use crate::cli::{Cli, Command, GraphArgs, LineageFormat, VerifyArgs};
use crate::locate::store_root;
use crate::render::{Exit, Hinted, cell, table};

mod diff;
mod export;
mod gc;
mod inspect;
mod lineage;
mod log;
mod nodes;
mod pin;
mod run;
mod show;
mod status;
mod target;
mod verify;

use diff::*;
use export::*;
use gc::*;
use inspect::*;
use lineage::*;
use log::*;
use nodes::*;
use pin::*;
use run::*;
use show::*;
use status::*;
use target::*;
use verify::*;

/// Runs the command `cli` asks for.
pub fn dispatch(cli: Cli) -> Result<Exit> {
    let json = cli.json;
    let explicit = cli.store.as_deref();
    match cli.command {
        Command::Run(a) => run(explicit, &a, json),
        Command::Status(g) => status(explicit, &g, json, false),
        Command::Plan(g) => status(explicit, &g, json, true),
        Command::Lineage(a) => lineage(explicit, &a, json),
        Command::Show(a) => show_command(explicit, &a, json),
        Command::Log(a) => log(
            explicit,
            a.graph.as_deref(),
            a.limit,
            a.run.as_deref(),
            json,
        ),
        Command::Diff(a) => diff(explicit, &a.a, &a.b, json),
        Command::Export(a) => export(explicit, &a),
        Command::Verify(a) => verify(explicit, &a, json),
        Command::Gc(a) => gc(explicit, &a, json),
        Command::Pin(a) => pin(explicit, &a),
        Command::Unpin(a) => unpin(explicit, &a),
        Command::Nodes(a) => {
            nodes(a.name.as_deref(), json)?;
            Ok(Exit::Success)
        }
    }
}

pub(super) fn open(explicit: Option<&Path>, graph: Option<&Path>) -> Result<Store> {
    let root = store_root(explicit, graph);
    Store::open(&root).with_context(|| format!("Failed to open the store `{}`", root.display()))
}

/// Opens the store for a command that only reads it: beside a running `dag run`, or on a
/// read-only filesystem.
pub(super) fn open_reader(explicit: Option<&Path>, graph: Option<&Path>) -> Result<Store> {
    let root = store_root(explicit, graph);
    Store::open_reader(&root)
        .with_context(|| format!("Failed to open the store `{}`", root.display()))
}

pub(super) fn load(g: &GraphArgs) -> Result<Graph> {
    let registry = dag_nodes::registry();
    let opts = LoadOptions {
        profile: g.profile.clone(),
        set: g.set.clone(),
    };
    let graph = Graph::load(&g.graph, &registry, &opts)?;
    for t in &g.only {
        if graph.node(t).is_none() {
            bail!("`--only {t}` names no node of `{}`", g.graph.display());
        }
    }
    Ok(graph)
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
