//! Store behaviour that users rely on: dedupe, trees, verification, gc, locking.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dag_diagnostic::Hint;
use dag_store::{CacheEntry, Digest, Error, GcOptions, Layout, Store, hash_bytes};
use serde_json::json;

fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        total += if p.is_dir() {
            disk_usage(&p)
        } else {
            fs::metadata(&p).unwrap().len()
        };
    }
    total
}

fn entry(key: &str, outputs: &[(&str, Digest)]) -> CacheEntry {
    CacheEntry {
        key: hash_bytes(key.as_bytes()),
        outputs: outputs.iter().map(|(p, d)| (p.to_string(), *d)).collect(),
        preimage_json: json!({"key": key}).to_string(),
        inputs: vec![],
        seconds: 0.0,
        run_id: "r1".into(),
        label: "n".into(),
    }
}

/// A succeeded run of `/g.toml` with these node outcomes.
fn finished_run(nodes: Vec<dag_store::NodeRunRecord>) -> dag_store::RunRecord {
    dag_store::RunRecord {
        id: "20260101T000000-1".into(),
        graph: "/g.toml".into(),
        profile: None,
        started: 0,
        finished: Some(1),
        host: "h".into(),
        tool_version: "0".into(),
        status: dag_store::RunStatus::Succeeded,
        nodes,
    }
}

#[test]
fn identical_content_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".dag")).unwrap();
    let big = vec![7u8; 1 << 20];
    let a = store.stage_bytes(&big, "dataset", json!({})).unwrap();
    store.commit_artifacts(vec![a.clone()]).unwrap();
    let before = disk_usage(&store.root().join("blobs"));
    let b = store
        .stage_bytes(&big, "dataset", json!({"other": 1}))
        .unwrap();
    store.commit_artifacts(vec![b.clone()]).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(disk_usage(&store.root().join("blobs")), before);
    assert_eq!(store.read(&a.digest).unwrap(), big);
    // Blobs are read-only so a node cannot scribble over its inputs.
    let mode = fs::metadata(store.path(&a.digest).unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0);
}

#[test]
fn trees_are_merkle_roots_that_share_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".dag")).unwrap();
    let mk = |name: &str, weights: &[u8]| {
        let d = store.scratch_dir(name).unwrap();
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("tokenizer.json"), b"{\"shared\": true}").unwrap();
        fs::write(d.join("sub/weights.bin"), weights).unwrap();
        d
    };
    let t1 = store
        .stage_dir(&mk("c1", b"w1"), "model", json!({}))
        .unwrap();
    let t2 = store
        .stage_dir(&mk("c2", b"w2"), "model", json!({}))
        .unwrap();
    let t1b = store
        .stage_dir(&mk("c3", b"w1"), "model", json!({}))
        .unwrap();
    assert_eq!(t1.record.layout, Layout::Tree);
    assert_eq!(t1.digest, t1b.digest, "same files, same digest");
    assert_ne!(t1.digest, t2.digest);
    let shared = |t: &dag_store::PendingArtifact| {
        t.record
            .entries
            .iter()
            .find(|e| e.path == "tokenizer.json")
            .unwrap()
            .digest
    };
    assert_eq!(shared(&t1), shared(&t2), "the shared file is one blob");
    store.commit_artifacts(vec![t1.clone(), t2]).unwrap();
    let view = store.path(&t1.digest).unwrap();
    assert_eq!(fs::read(view.join("sub/weights.bin")).unwrap(), b"w1");
    // An external folder with the same files has the same identity as the stored tree.
    let ext = dir.path().join("model");
    fs::create_dir_all(ext.join("sub")).unwrap();
    fs::write(ext.join("tokenizer.json"), b"{\"shared\": true}").unwrap();
    fs::write(ext.join("sub/weights.bin"), b"w1").unwrap();
    assert_eq!(store.hash_external(&ext).unwrap(), t1.digest);
    let out = dir.path().join("exported");
    store.export(&t1.digest, &out).unwrap();
    assert_eq!(
        fs::read(out.join("tokenizer.json")).unwrap(),
        b"{\"shared\": true}"
    );
}

#[test]
fn corrupt_and_missing_blobs_fail_loudly_and_verify_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".dag")).unwrap();
    let good = store.stage_bytes(b"good", "report", json!({})).unwrap();
    let bad = store
        .stage_bytes(b"original bytes", "report", json!({}))
        .unwrap();
    let gone = store
        .stage_bytes(b"to be deleted", "report", json!({}))
        .unwrap();
    store
        .commit_node(
            &entry("k", &[("out", bad.digest)]),
            std::slice::from_ref(&bad),
            None,
        )
        .unwrap();
    store
        .commit_artifacts(vec![good.clone(), gone.clone()])
        .unwrap();
    let path = store.path(&bad.digest).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"flipped bytes!").unwrap();
    fs::remove_file(store.path(&gone.digest).unwrap()).unwrap();
    assert!(matches!(
        store.read(&bad.digest),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        store.read(&gone.digest),
        Err(Error::MissingBlob { .. })
    ));
    let report = store.verify(false).unwrap();
    assert_eq!(report.problems.len(), 2);
    assert!(report.artifacts_dropped.is_empty());
    let report = store.verify(true).unwrap();
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.artifacts_dropped.len(), 2);
    assert!(store.artifact(&bad.digest).unwrap().is_none());
    // The computation that produced it is no longer a cache hit: it will rerun.
    assert!(store.cache_get(&hash_bytes(b"k")).unwrap().is_none());
    assert!(store.verify(false).unwrap().problems.is_empty());
    assert_eq!(store.read(&good.digest).unwrap(), b"good");
}

#[test]
fn second_open_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".dag");
    let _held = Store::open(&root).unwrap();
    let err = Store::open(&root).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    assert!(msg.contains("in use"), "{msg}");
}

#[test]
fn a_reader_beside_the_writer_sees_each_commit_and_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".dag");
    let writer = Store::open(&root).unwrap();
    let first = writer.stage_bytes(b"first", "dataset", json!({})).unwrap();
    writer
        .commit_node(
            &entry("a", &[("out", first.digest)]),
            std::slice::from_ref(&first),
            Some("a"),
        )
        .unwrap();
    writer.put_run(&finished_run(vec![])).unwrap();

    let reader = Store::open_reader(&root).unwrap();
    assert!(reader.is_read_only() && !writer.is_read_only());
    assert_eq!(reader.read(&first.digest).unwrap(), b"first");
    assert_eq!(reader.runs().unwrap(), writer.runs().unwrap());
    let key_a = hash_bytes(b"a");
    assert_eq!(
        reader.cache_lookup(&key_a).unwrap(),
        dag_store::CacheLookup::Hit(vec![("out".into(), first.digest)])
    );
    assert_eq!(reader.head("a").unwrap(), Some(key_a));

    // What the writer commits next is visible at once.
    let second = writer.stage_bytes(b"second", "dataset", json!({})).unwrap();
    let mut e = entry("b", &[("out", second.digest)]);
    e.inputs = vec![first.digest];
    writer
        .commit_node(&e, std::slice::from_ref(&second), None)
        .unwrap();
    assert_eq!(reader.consumers(&first.digest).unwrap(), vec![e.key]);
    assert_eq!(reader.output_meta(&e.key, "out").unwrap(), Some(json!({})));
    assert_eq!(reader.artifacts().unwrap().len(), 2);

    // Every write is refused, nothing reaches the store.
    let read_only = |r: Result<(), Error>| assert!(matches!(r, Err(Error::ReadOnly)), "{r:?}");
    read_only(reader.stage_bytes(b"x", "dataset", json!({})).map(|_| ()));
    read_only(reader.pin("p", &first.digest));
    read_only(reader.cache_remove(&key_a));
    read_only(reader.set_head("a", &e.key));
    read_only(reader.put_run(&finished_run(vec![])));
    read_only(reader.gc(&GcOptions::default()).map(|_| ()));
    read_only(reader.verify(true).map(|_| ()));
    assert!(reader.verify(false).unwrap().problems.is_empty());
    assert!(writer.pins().unwrap().is_empty());

    // Once the writer closes, the reader says so instead of answering from nothing.
    drop(writer);
    let err = reader.runs().unwrap_err();
    assert!(matches!(err, Error::Served(_)), "{err}");
    assert!(
        err.hint()
            .is_some_and(|h| h.contains("run the command again")),
        "{err}"
    );
}

#[test]
fn a_reader_alone_holds_the_store_and_a_writer_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".dag");
    drop(Store::open(&root).unwrap());
    let reader = Store::open_reader(&root).unwrap();
    assert!(reader.is_read_only());
    let waiting = std::thread::spawn({
        let root = root.clone();
        move || Store::open(&root).map(|s| s.is_read_only())
    });
    drop(reader);
    assert!(
        !waiting.join().unwrap().unwrap(),
        "the writer got the store"
    );
}

#[test]
fn gc_keeps_pins_and_recent_runs_and_removes_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".dag")).unwrap();
    let pinned = store.stage_bytes(b"pinned", "report", json!({})).unwrap();
    let used = store
        .stage_bytes(b"used by a run", "report", json!({}))
        .unwrap();
    let element = store
        .stage_bytes(b"list element", "model", json!({}))
        .unwrap();
    let list = store
        .stage_list(
            &[("ckpt-1".into(), element.digest)],
            "checkpoints",
            json!({}),
        )
        .unwrap();
    let garbage = store.stage_bytes(b"garbage", "report", json!({})).unwrap();
    store
        .commit_artifacts(vec![
            pinned.clone(),
            used.clone(),
            element.clone(),
            list.clone(),
            garbage.clone(),
        ])
        .unwrap();
    store.pin("keep", &pinned.digest).unwrap();
    store
        .put_run(&finished_run(vec![dag_store::NodeRunRecord {
            instance: "n".into(),
            node_type: "t".into(),
            key: None,
            status: dag_store::NodeRunStatus::Ran,
            seconds: 0.0,
            params_json: "{}".into(),
            outputs: vec![("a".into(), used.digest), ("b".into(), list.digest)],
        }]))
        .unwrap();
    let dry = store
        .gc(&GcOptions {
            keep_runs: 1,
            dry_run: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(dry.artifacts_removed, 1);
    assert!(
        store.artifact(&garbage.digest).unwrap().is_some(),
        "dry run removes nothing"
    );
    let report = store
        .gc(&GcOptions {
            keep_runs: 1,
            dry_run: false,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(report.artifacts_removed, 1);
    assert_eq!(report.blobs_removed, 1);
    assert!(store.artifact(&garbage.digest).unwrap().is_none());
    for kept in [&pinned, &used, &element, &list] {
        store.read(&kept.digest).unwrap();
    }
    assert_eq!(
        store.read_list(&list.digest).unwrap(),
        vec![("ckpt-1".to_string(), element.digest)]
    );
}

#[test]
fn stat_cache_answers_without_rehashing_until_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".dag")).unwrap();
    let f = dir.path().join("data.csv");
    fs::write(&f, b"a,b\n1,2\n").unwrap();
    let d1 = store.hash_external(&f).unwrap();
    assert_eq!(d1, hash_bytes(b"a,b\n1,2\n"));
    // Same size, content changed: the mtime change makes the cache miss. The new mtime is
    // set, not waited for: file timestamps tick only every few milliseconds.
    let mtime = fs::metadata(&f).unwrap().modified().unwrap();
    fs::write(&f, b"a,b\n1,3\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime + std::time::Duration::from_secs(1))
        .unwrap();
    assert_eq!(store.hash_external(&f).unwrap(), hash_bytes(b"a,b\n1,3\n"));
}

#[test]
fn progress_batches_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".dag");
    let key = hash_bytes(b"node");
    {
        let store = Store::open(&root).unwrap();
        store.progress_save(&key, 0, b"batch0").unwrap();
        store.progress_save(&key, 1, b"batch1").unwrap();
    }
    let store = Store::open(&root).unwrap();
    let batches = store.progress_load(&key).unwrap();
    assert_eq!(
        batches,
        vec![(0, b"batch0".to_vec()), (1, b"batch1".to_vec())]
    );
    store.progress_clear(&key).unwrap();
    assert!(store.progress_load(&key).unwrap().is_empty());
}

#[test]
fn work_dirs_outlive_attempts_until_committed_or_orphaned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".dag");
    let resumable = hash_bytes(b"training");
    let orphan = hash_bytes(b"abandoned");
    {
        let store = Store::open(&root).unwrap();
        let w = store.work_dir(&resumable).unwrap();
        fs::write(w.join("step-10.safetensors"), b"weights").unwrap();
        store.progress_save(&resumable, 0, b"step 10").unwrap();
        fs::write(store.work_dir(&orphan).unwrap().join("half"), b"x").unwrap();
    }
    // A later process (the rerun after a kill) finds the state where it was left.
    let store = Store::open(&root).unwrap();
    let w = store.work_dir(&resumable).unwrap();
    assert_eq!(fs::read(w.join("step-10.safetensors")).unwrap(), b"weights");
    // gc keeps what saved progress refers to and drops work nothing can resume from.
    store
        .gc(&GcOptions {
            keep_runs: 1,
            dry_run: false,
            ..Default::default()
        })
        .unwrap();
    assert!(w.join("step-10.safetensors").exists());
    assert!(!root.join("work").join(orphan.to_hex()).exists());
    store.progress_clear(&resumable).unwrap();
    assert!(!w.exists());
}

/// A store with some artifacts, cache entries and a run, closed; returns its root.
fn closed_store_with_history(dir: &Path) -> std::path::PathBuf {
    let root = dir.join(".dag");
    let store = Store::open(&root).unwrap();
    for i in 0..200 {
        let a = store
            .stage_bytes(format!("artifact {i}").as_bytes(), "report", json!({}))
            .unwrap();
        let d = a.digest;
        store
            .commit_node(&entry(&format!("k{i}"), &[("out", d)]), &[a], None)
            .unwrap();
    }
    store.put_run(&finished_run(vec![])).unwrap();
    root
}

#[test]
fn a_damaged_index_is_reported_as_such_or_read_whole_never_half() {
    // The index file cut short, overwritten in the middle or at its head, its config
    // emptied. Sled itself recovers what prefix of its log it can read, silently (measured:
    // 100, 100, 0 and 200 of 200 entries); the store's generation count turns lost writes
    // into the index error, which names what is intact and how to go on. An index that
    // opens whole may open. Never a raw error, never half a store taken as whole.
    type Damage = (&'static str, fn(&Path));
    let damages: [Damage; 4] = [
        ("header overwritten", |db| {
            let mut bytes = fs::read(db).unwrap();
            for b in &mut bytes[..64] {
                *b = !*b;
            }
            fs::write(db, bytes).unwrap();
        }),
        ("config emptied", |db| {
            fs::write(db.with_file_name("conf"), b"").unwrap();
        }),
        ("truncated", |db| {
            let len = fs::metadata(db).unwrap().len();
            fs::File::options()
                .write(true)
                .open(db)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
        ("overwritten", |db| {
            let mut bytes = fs::read(db).unwrap();
            let (mid, len) = (bytes.len() / 2, bytes.len());
            for b in &mut bytes[mid..mid + 4096.min(len - mid)] {
                *b = !*b;
            }
            fs::write(db, bytes).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let root = closed_store_with_history(dir.path());
        damage(&root.join("index/db"));
        match Store::open(&root) {
            Err(e @ Error::IndexDamaged { .. }) => {
                let hint = e.hint().unwrap_or_default();
                assert!(
                    hint.contains("blob in the store is intact")
                        && hint.contains("dag verify --rebuild-index"),
                    "{what}: {e}\nhint: {hint}"
                );
                // The way on that the hint gives works: everything comes back.
                let report = Store::rebuild_index(&root).unwrap();
                assert!(report.moved_aside.unwrap().exists(), "{what}");
                assert_eq!((report.cache_entries, report.runs), (200, 1), "{what}");
                let store = Store::open(&root).unwrap();
                assert_eq!(store.cache_entries().unwrap().len(), 200, "{what}");
                assert_eq!(store.verify(false).unwrap().problems, vec![], "{what}");
            }
            Err(e) => panic!("{what}: a raw error: {e}"),
            Ok(store) => {
                assert_eq!(store.cache_entries().unwrap().len(), 200, "{what}");
                let report = store.verify(false).unwrap();
                assert_eq!(report.problems, vec![], "{what}: opened, but not whole");
            }
        }
    }
}

#[test]
fn a_snapshot_left_half_written_by_a_kill_does_not_make_the_index_unreadable() {
    // Sled reads the newest `snap.*` file when it opens, an unfinished `.generating` one
    // included; a kill while it writes one left an index sled refused as corrupt.
    let dir = tempfile::tempdir().unwrap();
    let root = closed_store_with_history(dir.path());
    fs::write(
        root.join("index/snap.7FFFFFFFFFFFFFFF.generating"),
        b"half a snapshot",
    )
    .unwrap();
    let store = Store::open(&root).unwrap();
    assert_eq!(store.cache_entries().unwrap().len(), 200);
    assert_eq!(store.verify(false).unwrap().problems, vec![]);
}

/// Everything a reader can ask the index, for comparing two indexes.
fn dump(store: &Store, scopes: &[&str]) -> serde_json::Value {
    let mut entries = store.cache_entries().unwrap();
    entries.sort_by_key(|e| e.key);
    let entries: Vec<_> = entries
        .iter()
        .map(|e| {
            let metas: Vec<_> = e
                .outputs
                .iter()
                .map(|(port, _)| store.output_meta(&e.key, port).unwrap())
                .collect();
            let consumers: Vec<_> = e
                .outputs
                .iter()
                .map(|(_, d)| store.consumers(d).unwrap())
                .collect();
            json!({
                "entry": format!("{e:?}"),
                "metas": metas,
                "consumers": format!("{consumers:?}"),
                "progress": store.progress_load(&e.key).unwrap(),
            })
        })
        .collect();
    let mut artifacts = store.artifacts().unwrap();
    artifacts.sort_by_key(|a| a.digest);
    json!({
        "artifacts": format!("{artifacts:?}"),
        "entries": entries,
        "runs": format!("{:?}", store.runs().unwrap()),
        "pins": format!("{:?}", store.pins().unwrap()),
        "heads": scopes.iter().map(|s| store.head(s).unwrap().map(|d| d.to_hex())).collect::<Vec<_>>(),
    })
}

#[test]
fn the_journal_rebuilds_an_index_lost_whole_across_gc_and_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".dag");
    let scopes = ["g::a", "g::b", "g::c"];
    let store = Store::open(&root).unwrap();
    let mut run = finished_run(vec![]);
    let mut keys = vec![];
    for i in 0..6 {
        let a = store
            .stage_bytes(
                format!("rows {i}").as_bytes(),
                "dataset",
                json!({"rows": i}),
            )
            .unwrap();
        let scratch = store.scratch_dir("t").unwrap();
        fs::write(scratch.join("weights.bin"), format!("w{i}")).unwrap();
        let t = store.stage_dir(&scratch, "model", json!({})).unwrap();
        let list = store
            .stage_list(&[("step-1".into(), t.digest)], "checkpoints", json!({}))
            .unwrap();
        let mut e = entry(
            &format!("k{i}"),
            &[("rows", a.digest), ("ckpts", list.digest)],
        );
        e.inputs = keys.last().map(|(_, d)| vec![*d]).unwrap_or_default();
        store.commit_artifacts(vec![t.clone()]).unwrap();
        store
            .commit_node(&e, &[a.clone(), list], Some(scopes[i % 3]))
            .unwrap();
        keys.push((e.key, a.digest));
        run.nodes.push(dag_store::NodeRunRecord {
            instance: format!("n{i}"),
            node_type: "t".into(),
            key: Some(e.key),
            status: dag_store::NodeRunStatus::Ran,
            seconds: 0.0,
            params_json: "{}".into(),
            outputs: e.outputs.clone(),
        });
    }
    store.progress_save(&keys[5].0, 0, b"batch 0").unwrap();
    store.progress_save(&keys[4].0, 0, b"batch 0").unwrap();
    store.progress_clear(&keys[4].0).unwrap();
    store.pin("first", &keys[0].1).unwrap();
    store.pin("gone", &keys[1].1).unwrap();
    assert!(store.unpin("gone").unwrap());
    store.set_head("g::a", &keys[1].0).unwrap();
    store.put_run(&run).unwrap();
    // gc writes the journal's base; what follows is appended to a new segment.
    let unkept = store.stage_bytes(b"unkept", "dataset", json!({})).unwrap();
    store
        .commit_node(&entry("orphan", &[("out", unkept.digest)]), &[unkept], None)
        .unwrap();
    store
        .gc(&GcOptions {
            keep_runs: 1,
            ..Default::default()
        })
        .unwrap();
    store.cache_remove(&keys[3].0).unwrap();
    let later = store.stage_bytes(b"later", "dataset", json!({})).unwrap();
    store
        .commit_node(
            &entry("later", &[("out", later.digest)]),
            &[later],
            Some("g::c"),
        )
        .unwrap();
    let mut second = finished_run(vec![]);
    second.id = "20260101T000001-1".into();
    store.put_run(&second).unwrap();
    let before = dump(&store, &scopes);
    drop(store);

    fs::remove_dir_all(root.join("index")).unwrap();
    let report = Store::rebuild_index(&root).unwrap();
    assert_eq!(report.moved_aside, None);
    assert!(report.unreadable.is_empty());
    assert_eq!(report.verify.problems, vec![]);
    let store = Store::open(&root).unwrap();
    assert_eq!(
        dump(&store, &scopes),
        before,
        "the rebuilt index is the index"
    );
    assert!(store.cache_lookup(&hash_bytes(b"orphan")).unwrap() == dag_store::CacheLookup::Miss);
    drop(store);

    // A torn last frame (a kill mid-append) costs that record only, and is reported.
    let segments: Vec<_> = {
        let mut s: Vec<_> = fs::read_dir(root.join("journal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        s.sort();
        s
    };
    let last = segments.last().unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, &[200, 1, 0, 0, 9, 9]).unwrap();
    drop(f);
    let report = Store::rebuild_index(&root).unwrap();
    assert_eq!(report.unreadable, vec![(last.clone(), 6)]);
    assert!(report.moved_aside.is_some());
    assert_eq!(dump(&Store::open(&root).unwrap(), &scopes), before);
}

#[test]
fn a_rebuilt_index_drops_what_its_blobs_no_longer_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = closed_store_with_history(dir.path());
    let store = Store::open(&root).unwrap();
    let victim = store.cache_outputs(&hash_bytes(b"k7")).unwrap().unwrap()[0].1;
    let blob = store.path(&victim).unwrap();
    drop(store);
    fs::remove_file(blob).unwrap();
    let report = Store::rebuild_index(&root).unwrap();
    assert_eq!(report.verify.artifacts_dropped, vec![victim]);
    assert_eq!(report.verify.cache_entries_dropped, 1);
    let store = Store::open(&root).unwrap();
    assert_eq!(store.cache_entries().unwrap().len(), 199);
    assert_eq!(
        store.cache_lookup(&hash_bytes(b"k7")).unwrap(),
        dag_store::CacheLookup::Miss
    );
    assert_eq!(store.verify(false).unwrap().problems, vec![]);
}
