//! SIGTERM cancels the shutdown token (own test binary: it signals its own process).

use std::time::Duration;

use tanma_connector::ops::on_signals;

#[tokio::test]
async fn sigterm_cancels_the_token() {
    let token = on_signals().expect("signal handlers register");
    assert!(!token.is_cancelled());
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(5), token.cancelled())
        .await
        .expect("token cancelled by SIGTERM");
}
