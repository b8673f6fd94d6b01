//! Crash safety of the store's maintenance writers, instant by instant.
//!
//! `gc` and `verify --repair` count their mutations (index writes, flushes, file
//! removals); [`CrashAfter`] stops them before mutation `n` as a kill there would. Each test
//! stops the operation before every `n` in turn, on a fresh copy of one store, reopens the
//! store as the next process would and checks the invariants every reader relies on:
//! every indexed artifact's blobs exist and hash right, every list's elements are indexed,
//! every cache entry's outputs are indexed. Then the operation runs to the end and leaves a
//! whole store. (Real kill -9s of the `dag` binary are in `tests/cli.rs`.)

use std::fs;
use std::path::{Path, PathBuf};

use dag_store::{
    CacheEntry, CrashAfter, Digest, Error, GcOptions, NodeRunRecord, NodeRunStatus, RunRecord,
    RunStatus, Store, VerifyProblem, hash_bytes,
};
use serde_json::json;

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// What one node of the fixture committed: a file, a tree and a list of two trees.
struct Node {
    key: Digest,
    tree: Digest,
    list: Digest,
}

/// A store with `n` committed nodes (file, tree and list outputs; trees share a blob), the
/// even ones used by a run (live), the odd ones garbage for `gc`.
fn fixture(root: &Path, n: usize) -> Vec<Node> {
    let store = Store::open(root).unwrap();
    let mut nodes = vec![];
    let mut run_nodes = vec![];
    for i in 0..n {
        let scratch = store.scratch_dir("fixture").unwrap();
        let mk_tree = |name: &str| {
            let d = scratch.join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("shared.json"), b"{\"tokenizer\": 1}").unwrap();
            fs::write(d.join("weights.bin"), format!("{name}-{i}")).unwrap();
            store.stage_dir(&d, "model", json!({})).unwrap()
        };
        let file = store
            .stage_bytes(format!("rows of node {i}").as_bytes(), "dataset", json!({}))
            .unwrap();
        let tree = mk_tree("final");
        let (c1, c2) = (mk_tree("ckpt-1"), mk_tree("ckpt-2"));
        let list = store
            .stage_list(
                &[("ckpt-1".into(), c1.digest), ("ckpt-2".into(), c2.digest)],
                "checkpoints",
                json!({}),
            )
            .unwrap();
        let outputs = vec![
            ("rows".to_string(), file.digest),
            ("model".to_string(), tree.digest),
            ("checkpoints".to_string(), list.digest),
        ];
        let entry = CacheEntry {
            key: hash_bytes(format!("node {i}").as_bytes()),
            outputs: outputs.clone(),
            preimage_json: json!({ "node": i }).to_string(),
            inputs: vec![],
            seconds: 0.0,
            run_id: "r".into(),
            label: format!("n{i}"),
        };
        store
            .commit_node(&entry, &[file, tree.clone(), c1, c2, list.clone()], None)
            .unwrap();
        if i % 2 == 0 {
            run_nodes.push(NodeRunRecord {
                instance: format!("n{i}"),
                node_type: "t".into(),
                key: Some(entry.key),
                status: NodeRunStatus::Ran,
                seconds: 0.0,
                params_json: "{}".into(),
                outputs,
            });
        }
        nodes.push(Node {
            key: entry.key,
            tree: tree.digest,
            list: list.digest,
        });
    }
    store
        .put_run(&RunRecord {
            id: "20260101T000000-1".into(),
            graph: "/g.toml".into(),
            profile: None,
            started: 0,
            finished: Some(1),
            host: "h".into(),
            tool_version: "0".into(),
            status: RunStatus::Succeeded,
            nodes: run_nodes,
        })
        .unwrap();
    nodes
}

/// The problems a reader could trip over: `verify` without repair finds none of them.
fn structural_problems(store: &Store) -> Vec<VerifyProblem> {
    let report = store.verify(false).unwrap();
    report.problems
}

/// Every cache hit can be served: each entry's outputs are present on disk.
fn assert_hits_servable(store: &Store, nodes: &[Node], context: &str) {
    for n in nodes {
        if let Some(outputs) = store.cache_outputs(&n.key).unwrap() {
            for (port, d) in outputs {
                assert!(
                    store.artifact_present(&d).unwrap(),
                    "{context}: the cache entry of {} names `{port}` {d}, which is not there",
                    n.key
                );
            }
        }
    }
}

struct Copy {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn fresh_copy(template: &Path) -> Copy {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".dag");
    copy_dir(template, &root);
    Copy { _dir: dir, root }
}

#[test]
fn gc_stopped_at_any_step_leaves_a_whole_store() {
    let template = tempfile::tempdir().unwrap();
    let troot = template.path().join(".dag");
    let nodes = fixture(&troot, 6);
    let gc = |crash| GcOptions {
        keep_runs: 1,
        dry_run: false,
        crash,
    };
    let mut n = 0;
    loop {
        let c = fresh_copy(&troot);
        let outcome = Store::open(&c.root).unwrap().gc(&gc(CrashAfter(Some(n))));
        let store = Store::open(&c.root).unwrap();
        let context = format!("gc stopped before step {n}");
        assert_eq!(structural_problems(&store), vec![], "{context}");
        assert_hits_servable(&store, &nodes, &context);
        // Finishing the interrupted gc leaves the live half, whole.
        let finish = store.gc(&gc(CrashAfter::never())).unwrap();
        assert_eq!(
            structural_problems(&store),
            vec![],
            "{context}, then finished"
        );
        for (i, node) in nodes.iter().enumerate() {
            let hit = store.cache_outputs(&node.key).unwrap().is_some();
            assert_eq!(
                hit,
                i % 2 == 0,
                "{context}: node {i} cached after gc: {hit}"
            );
        }
        match outcome {
            Err(Error::InjectedCrash(at)) => assert_eq!(at, n),
            Ok(report) => {
                assert_eq!(report.steps, n, "a gc that finished made {n} steps");
                assert!(finish.artifacts_removed == 0 && finish.blobs_removed == 0);
                break;
            }
            Err(e) => panic!("{context}: {e}"),
        }
        n += 1;
    }
    assert!(n > 20, "the fixture exercises many instants ({n})");
}

#[test]
fn repair_stopped_at_any_step_leaves_a_whole_store_and_drops_what_holds_the_damage() {
    let template = tempfile::tempdir().unwrap();
    let troot = template.path().join(".dag");
    let nodes = fixture(&troot, 3);
    // Damage one checkpoint's weights: the checkpoint tree, the list holding it and node
    // 1's cache entry must all go, so the next run recomputes node 1 and nothing else.
    let damaged_list = nodes[1].list;
    let weights = {
        let store = Store::open(&troot).unwrap();
        let (_, ckpt) = store.read_list(&damaged_list).unwrap()[0];
        let rec = store.artifact(&ckpt).unwrap().unwrap();
        let blob = rec
            .entries
            .iter()
            .find(|e| e.path == "weights.bin")
            .unwrap()
            .digest;
        blob.to_hex()
    };
    let corrupt = |root: &Path| {
        let p = root.join("blobs").join(&weights[..2]).join(&weights[2..]);
        let mut perm = fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(&p, perm).unwrap();
        fs::write(&p, b"flipped bits").unwrap();
    };
    let mut n = 0;
    loop {
        let c = fresh_copy(&troot);
        corrupt(&c.root);
        let outcome = Store::open(&c.root)
            .unwrap()
            .verify_crashing(true, CrashAfter(Some(n)));
        let store = Store::open(&c.root).unwrap();
        let context = format!("verify --repair stopped before step {n}");
        // Until the repair is done the damage may still show, but never as an entry or a
        // list naming something that is gone.
        for p in structural_problems(&store) {
            assert!(
                matches!(
                    p,
                    VerifyProblem::Corrupt { .. } | VerifyProblem::Missing { .. }
                ),
                "{context}: {p:?}"
            );
        }
        let finish = store.verify(true).unwrap();
        assert_eq!(
            structural_problems(&store),
            vec![],
            "{context}, then finished"
        );
        assert_hits_servable(&store, &nodes, &context);
        assert!(
            store.cache_outputs(&nodes[1].key).unwrap().is_none(),
            "{context}"
        );
        assert!(
            store.artifact(&damaged_list).unwrap().is_none(),
            "{context}"
        );
        for i in [0, 2] {
            assert!(store.cache_outputs(&nodes[i].key).unwrap().is_some());
            assert!(store.artifact_present(&nodes[i].tree).unwrap());
        }
        match outcome {
            Err(Error::InjectedCrash(at)) => assert_eq!(at, n),
            Ok(report) => {
                assert_eq!(report.steps, n);
                assert_eq!(report.cache_entries_dropped, 1);
                assert!(report.artifacts_dropped.contains(&damaged_list));
                assert_eq!(finish.problems, vec![]);
                break;
            }
            Err(e) => panic!("{context}: {e}"),
        }
        n += 1;
    }
    assert!(n >= 5, "{n} instants");
}
