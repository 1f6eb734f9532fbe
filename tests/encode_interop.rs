//! Independent decoding: records written by the codec, decoded by fastavro
//! (`tests/interop/decode.py`) from the `.avsc` files, in both framings.

mod encode_support;

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use encode_support::{relation, t};
use serde_json::{json, Value};
use tanma_connector::customer::{diff, fingerprint_hex, Change, Snapshot};
use tanma_connector::encode::{Codec, Framing};
use tanma_connector::plan::window::Window;

fn sample_changes() -> Vec<Change> {
    let mut bare = relation("b");
    bare.mobiles.clear();
    bare.fields.clear();
    bare.nickname = None;
    let created = diff(None, "wm_客户_🐼", vec![relation("a"), bare], t(1)).unwrap();
    let mut a = relation("a");
    a.fields[2].value = Some("经理 👔".into());
    a.avatar = Some(String::new());
    let updated = diff(
        Some(created.after()),
        "wm_客户_🐼",
        vec![a, relation("c")],
        t(2),
    )
    .unwrap();
    vec![created, updated]
}

fn snapshot_json(s: &Snapshot) -> Value {
    json!({
        "external_user_id": s.customer.external_user_id,
        "revision": s.revision,
        "fingerprint": fingerprint_hex(s.fingerprint),
        "updated_at": s.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "relations": s.customer.relations.iter()
            .map(tanma_connector::customer::diff::relation_json).collect::<Vec<_>>(),
    })
}

/// How to get a Python with fastavro, for the panic messages.
const PYTHON_HINT: &str = "run the tests with scripts/test (it makes .venv with fastavro and sets \
     TANMA_PYTHON), or set TANMA_PYTHON to a Python 3 with fastavro \
     (python3 -m venv .venv && .venv/bin/pip install fastavro)";

/// The Python that runs decode.py: `TANMA_PYTHON` (set by scripts/test to the repo's venv),
/// else `python3`.
fn python() -> String {
    std::env::var("TANMA_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// Runs decode.py over base64 lines; fails loudly if Python or fastavro is missing.
fn run_decoder(records: &[Vec<u8>], ids: &[&str]) -> Vec<Value> {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = python();
    let mut cmd = Command::new(&python);
    cmd.arg(format!("{root}/tests/interop/decode.py"))
        .arg("--schemas")
        .arg(format!("{root}/schemas"));
    for id in ids {
        cmd.arg("--id").arg(id);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): {PYTHON_HINT}"));
    let mut input = String::new();
    for r in records {
        input.push_str(&base64::engine::general_purpose::STANDARD.encode(r));
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "decode.py failed ({}) with {python}: {stderr}\n(if fastavro is missing: {PYTHON_HINT})",
        out.status
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        records.len(),
        "one output per record; stderr: {stderr}"
    );
    lines
}

fn check(framing: Framing, ids: &[&str], expected_framing: &str) {
    let codec = Codec::new(framing).unwrap();
    let window = Window::new(t(1000), t(1060));
    let changes = sample_changes();
    let mut records = Vec::new();
    for c in &changes {
        records.push(codec.encode_event(c, window, t(5)).unwrap());
        records.push(codec.encode_snapshot(c.after()).unwrap());
    }
    let decoded = run_decoder(&records, ids);
    for (i, c) in changes.iter().enumerate() {
        let ev = &decoded[2 * i];
        let snap = &decoded[2 * i + 1];
        assert_eq!(ev["framing"], expected_framing);
        assert_eq!(ev["schema"], "event");
        assert_eq!(snap["schema"], "snapshot");
        let rec = &ev["record"];
        // fastavro's view equals ours (apache-avro decode, same JSON rendering)...
        let ours = codec.decode_event_json(&records[2 * i]).unwrap();
        assert_eq!(rec, &ours, "event {i}: fastavro vs codec");
        // ...and both carry what the change says.
        assert_eq!(rec["event_id"], c.event_id());
        assert_eq!(rec["event_type"], c.event_type());
        assert_eq!(rec["external_user_id"], "wm_客户_🐼");
        assert_eq!(rec["revision"], c.after().revision);
        assert_eq!(rec["observed_at"], "1970-01-01T00:00:05.123Z");
        assert_eq!(rec["window_before"], "1970-01-01T00:17:40.000Z");
        assert_eq!(rec["after"], snapshot_json(c.after()));
        assert_eq!(snap["record"], snapshot_json(c.after()));
        match c {
            Change::Created { .. } => {
                assert_eq!(rec["before"], Value::Null);
                assert_eq!(rec["changes"], json!([]));
                assert_eq!(rec["after"]["relations"][1]["mobiles"], json!([]));
                assert_eq!(rec["after"]["relations"][1]["wechat_nickname"], Value::Null);
            }
            Change::Updated {
                before, changes, ..
            }
            | Change::Deleted {
                before, changes, ..
            } => {
                assert_eq!(rec["before"], snapshot_json(before));
                let got: Vec<Value> = changes
                    .iter()
                    .map(|p| json!({"path": p.path, "old_value": p.old_value, "new_value": p.new_value}))
                    .collect();
                assert_eq!(rec["changes"], Value::Array(got));
                assert_eq!(rec["changes"][0]["new_value"], "\"\"");
            }
        }
    }
}

#[test]
fn fastavro_decodes_confluent_framing() {
    check(
        Framing::Confluent {
            event_schema_id: 41,
            snapshot_schema_id: 42,
        },
        &["41=event", "42=snapshot"],
        "confluent",
    );
}

#[test]
fn fastavro_decodes_single_object_framing_and_agrees_on_fingerprints() {
    check(Framing::SingleObject, &[], "single_object");
}

#[test]
fn decoder_rejects_a_wrong_fingerprint() {
    let codec = Codec::new(Framing::SingleObject).unwrap();
    let mut rec = codec.encode_snapshot(sample_changes()[0].after()).unwrap();
    rec[5] ^= 0xff;
    let root = env!("CARGO_MANIFEST_DIR");
    let python = python();
    let mut child = Command::new(&python)
        .arg(format!("{root}/tests/interop/decode.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): {PYTHON_HINT}"));
    let line = base64::engine::general_purpose::STANDARD.encode(&rec) + "\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown schema fingerprint"),
        "{err}\n(if fastavro is missing: {PYTHON_HINT})"
    );
}
