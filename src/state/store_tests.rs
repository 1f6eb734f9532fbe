//! Tests of the state store.

use super::*;

fn rel(key_hash: u64, fingerprint: u64) -> RelationMeta {
    RelationMeta {
        key_hash,
        fingerprint,
        window: None,
    }
}

#[test]
fn apply_load_replace_remove() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StateStore::open(dir.path()).unwrap();
    assert!(!s.contains("wm1"));
    assert_eq!(s.load("wm1").unwrap(), None);
    s.apply("wm1", b"v1", &[rel(11, 1), rel(12, 2)]).unwrap();
    s.apply("wm2", b"other", &[rel(21, 3)]).unwrap();
    assert!(s.contains("wm1"));
    assert_eq!(s.customers(), 2);
    assert_eq!(s.load("wm1").unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(s.relation_fingerprint(12), Some(2));
    // A new version drops relation 12, changes 11, adds 13.
    s.apply("wm1", b"v2-longer", &[rel(11, 9), rel(13, 4)])
        .unwrap();
    assert_eq!(s.load("wm1").unwrap().as_deref(), Some(&b"v2-longer"[..]));
    assert_eq!(s.relation_fingerprint(11), Some(9));
    assert_eq!(s.relation_fingerprint(12), None);
    assert_eq!(s.relation_fingerprint(13), Some(4));
    assert_eq!(s.relations(), 3);
    s.remove("wm1");
    assert!(!s.contains("wm1"));
    assert_eq!(s.relation_fingerprint(11), None);
    assert_eq!(s.relation_fingerprint(13), None);
    assert_eq!(s.relation_fingerprint(21), Some(3));
    assert_eq!(s.customers(), 1);
    s.remove("absent");
    let stats = s.stats();
    assert_eq!(stats.live_bytes, (2 + 3 + 4 + 32 + 5) as u64);
}

#[test]
fn compaction_keeps_every_live_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StateStore::open_with(
        dir.path(),
        StoreOptions {
            compact_min_dead_bytes: 64 << 10,
        },
    )
    .unwrap();
    // Rewrite 200 customers many times: dead bytes pile up and trigger compactions.
    for round in 0..30u64 {
        for c in 0..200u64 {
            let ext = format!("wm{c}");
            let value = format!("{ext}-round-{round}-{}", "x".repeat(100));
            s.apply(&ext, value.as_bytes(), &[rel(c + 1, round)])
                .unwrap();
        }
    }
    let stats = s.stats();
    assert!(
        stats.spill_bytes <= 2 * stats.live_bytes + (64 << 10),
        "spill not compacted: {stats:?}"
    );
    for c in 0..200u64 {
        let ext = format!("wm{c}");
        let want = format!("{ext}-round-29-{}", "x".repeat(100));
        assert_eq!(s.load(&ext).unwrap().as_deref(), Some(want.as_bytes()));
        assert_eq!(s.relation_fingerprint(c + 1), Some(29));
    }
    s.flush().unwrap();
    let on_disk = std::fs::metadata(dir.path().join("state.spill"))
        .unwrap()
        .len();
    assert_eq!(on_disk, s.stats().spill_bytes);
    assert!(!dir.path().join("compacting").exists());
}

#[test]
fn headers_round_trip() {
    let rels = [rel(1, u64::MAX), rel(u64::MAX - 1, 7)];
    let h = encode_headers(0x0102_0304_0506_0708, &rels);
    assert_eq!(h[0].0, HEADER_FINGERPRINT);
    assert_eq!(h[0].1, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(h[1].0, HEADER_RELATIONS);
    assert_eq!(h[1].1.len(), 32);
    assert_eq!(h[2].0, HEADER_RELATION_WINDOWS);
    assert_eq!(h[2].1, vec![0; 32], "unknown windows");
    assert_eq!(decode_relations(&h[1].1).unwrap(), rels);
    assert_eq!(decode_fingerprint(&h[0].1), Some(0x0102_0304_0506_0708));
    assert_eq!(decode_relations(&[0; 15]), None);
    assert_eq!(decode_fingerprint(&[0; 7]), None);
}

#[test]
fn key_hash_is_xxh3_of_the_utf8_bytes() {
    assert_eq!(key_hash("wmABC"), xxhash_rust::xxh3::xxh3_64(b"wmABC"));
}

#[test]
fn windows_follow_apply_and_graves_follow_bury() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StateStore::open(dir.path()).unwrap();
    let w = |since, before| Some(RelWindow { since, before });
    let m = |k, f, window| RelationMeta {
        key_hash: k,
        fingerprint: f,
        window,
    };
    s.apply("wm1", b"v1", &[m(11, 1, w(0, 100)), m(12, 2, None)])
        .unwrap();
    s.apply("wm2", b"v2", &[m(21, 3, w(10, 20))]).unwrap();
    assert_eq!(s.relation_window(11), w(0, 100));
    assert_eq!(s.relation_window(12), None, "unknown window");
    let mut inside = s.relations_within(RelWindow {
        since: 0,
        before: 100,
    });
    inside.sort();
    assert_eq!(inside, vec![(11, key_hash("wm1")), (21, key_hash("wm2"))]);
    // Narrowed and one relation gone.
    s.apply("wm1", b"v1b", &[m(11, 1, w(50, 60))]).unwrap();
    assert_eq!(s.relation_window(11), w(50, 60));
    let e = s.load_by_hash(key_hash("wm1")).unwrap().unwrap();
    assert_eq!(
        (e.external_user_id.as_str(), e.value.as_slice()),
        ("wm1", &b"v1b"[..])
    );
    assert_eq!(e.relations, vec![m(11, 1, w(50, 60))]);
    s.bury("wm2", 4);
    assert_eq!(s.grave("wm2"), Some(4));
    assert_eq!(s.relation_window(21), None);
    assert_eq!(
        s.relations_within(RelWindow {
            since: 0,
            before: 100
        }),
        vec![(11, key_hash("wm1"))]
    );
    // Back: the grave is gone with the new entry.
    s.apply("wm2", b"v2b", &[m(21, 3, w(10, 20))]).unwrap();
    assert_eq!(s.grave("wm2"), None);
}
