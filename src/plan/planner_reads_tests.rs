//! Planner tests of retries: incomplete reads queued, handed out when due, kept by restarts.

use super::super::tests::{cfg, read_of, t};
use super::super::*;

#[test]
fn an_incomplete_read_is_retried_soon_without_holding_the_watermark() {
    // Retries share the re-scan slots of a batch.
    let mut c = cfg(100, 0, 0, &[], 0.5);
    c.poll_interval_ms = 5_000;
    let mut p = Planner::new(&c, None).unwrap();
    let now = t(1000);
    let b = p.next_batch(now, 2);
    p.record_read(&b[0], read_of(500, false)).unwrap();
    p.record_read(&b[1], read_of(5, true)).unwrap();
    let cp = p.checkpoint_after(&b[1]);
    assert_eq!(cp.watermark, t(200));
    assert_eq!(cp.retries.len(), 1);
    assert_eq!(
        (cp.retries[0].window, cp.retries[0].attempts),
        (b[0].window, 1)
    );
    assert_eq!(cp.retries[0].due, now + TimeDelta::seconds(5));
    p.on_committed(&b[0]).unwrap();
    p.on_committed(&b[1]).unwrap();
    assert_eq!(p.checkpoint().retries, cp.retries);
    // Not due yet: forward only. Due: handed out as a retry, without holding the watermark.
    assert!(p
        .next_batch(t(1004), 2)
        .iter()
        .all(|w| w.kind == WindowKind::Forward));
    p.rewind();
    let b = p.next_batch(t(1005), 4);
    let retry = *b
        .iter()
        .find(|w| w.kind == WindowKind::Retry { attempt: 1 })
        .unwrap();
    assert_eq!(retry.window, Window::new(t(0), t(100)));
    let fwd = *b.iter().rfind(|w| w.kind == WindowKind::Forward).unwrap();
    assert_eq!(p.checkpoint_after(&fwd).watermark, fwd.window.before);
    // Incomplete again: queued with twice the delay; a restart keeps it.
    for w in &b {
        p.record_read(w, read_of(5, *w != retry)).unwrap();
    }
    let cp = p.checkpoint_after(b.last().unwrap());
    b.iter().for_each(|w| p.on_committed(w).unwrap());
    assert_eq!(p.retries.len(), 1);
    assert_eq!(p.retries[0].attempts, 2);
    assert_eq!(p.retries[0].due, t(1015));
    let mut q = Planner::new(&c, Some(Checkpoint::from_bytes(&cp.to_bytes()).unwrap())).unwrap();
    let again = q.next_batch(t(1015), 4);
    let retry = again
        .iter()
        .find(|w| w.kind == WindowKind::Retry { attempt: 2 })
        .unwrap();
    // Complete at last: the queue is empty; a read without a summary counts as complete.
    for w in &again {
        q.record_read(w, read_of(5, true)).unwrap();
        q.on_committed(w).unwrap();
    }
    assert!(q.retries.is_empty(), "{:?}", q.retries);
    assert_eq!(retry.window, Window::new(t(0), t(100)));
    assert!(matches!(
        q.record_read(retry, read_of(5, true)),
        Err(PlanError::NotOutstanding { .. })
    ));
}
