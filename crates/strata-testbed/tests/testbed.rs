//! The testbed itself: hosts reach each other over the bridge, a limit is installed, a
//! process started in a host dies with the testbed, and nothing is left behind.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use strata_testbed::{unavailable, Testbed};

fn namespaces() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

#[test]
fn hosts_reach_each_other_limits_apply_and_teardown_removes_everything() {
    if let Some(why) = unavailable() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_TOOLS").is_none(),
            "STRATA_REQUIRE_TOOLS is set but the testbed cannot run: {why}"
        );
        eprintln!(
            "SKIPPED: hosts_reach_each_other_limits_apply_and_teardown_removes_everything: {why}"
        );
        return;
    }
    let bed = Testbed::new(&["up", "a", "b"]).unwrap();
    let (up, a, b) = (&bed.hosts[0], &bed.hosts[1], &bed.hosts[2]);
    assert_eq!(
        [up.ip.as_str(), a.ip.as_str(), b.ip.as_str()],
        ["10.77.0.1", "10.77.0.11", "10.77.0.12"]
    );
    // A server in b, reached from a over the bridge; it goes with the testbed.
    let server = b
        .command("python3")
        .args(["-m", "http.server", "8000", "--bind", &b.ip])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = server.id();
    bed.keep(server);
    let url = format!("http://{}:8000/", b.ip);
    a.wait_http(&url, std::time::Duration::from_secs(20))
        .unwrap();
    assert!(a.tx_bytes().unwrap() > 0, "the request left a's interface");
    assert!(b.tx_bytes().unwrap() > 0, "the answer left b's interface");
    bed.limit(up, 20).unwrap();
    let qdisc = up.run("tc", &["qdisc", "show", "dev", &up.dev]).unwrap();
    assert!(qdisc.contains("tbf") && qdisc.contains("20Mbit"), "{qdisc}");
    // A failing command reports its stderr.
    let err = a
        .run("ip", &["link", "set", "nosuchdev", "up"])
        .unwrap_err();
    assert!(err.to_string().contains("nosuchdev"), "{err}");
    // The server, and the namespaces, go with the testbed.
    let names: Vec<String> = bed.hosts.iter().map(|h| h.ns.clone()).collect();
    assert!(names.iter().all(|n| namespaces().contains(n.as_str())));
    let handle = bed.teardown_handle();
    drop(bed);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the server started in a host is gone"
    );
    let left = namespaces();
    for n in &names {
        assert!(!left.contains(n.as_str()), "{n} left behind: {left}");
    }
    handle.run(); // after the drop: nothing to do, no panic
}
