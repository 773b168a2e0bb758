//! The `capi-edge` binary as a user runs it: JSON lines in, JSON lines out.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &str) -> (String, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_capi-edge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn capi-edge");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("run");
    (
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        out.status.success(),
    )
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn hash_streams_one_answer_per_line_and_never_echoes_raw_values() {
    let input = concat!(
        r#"{"field":"ph","value":"(650)555-1212","country":"US"}"#,
        "\n",
        r#"{"field":"em","value":"John_Smith@gmail.com"}"#,
        "\n",
        r#"{"field":"em","value":"not an email"}"#,
        "\n",
        "garbage\n",
    );
    let (out, _, ok) = run(&["hash"], input);
    assert!(ok);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    // Meta's published examples (D-CIP).
    assert_eq!(
        lines[0]["sha256"],
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    );
    assert_eq!(lines[1]["normalized"], "john_smith@gmail.com");
    assert_eq!(lines[2]["error"], "invalid_email");
    assert!(lines[3]["error"].is_string());
    assert!(!out.contains("not an email"));
}

#[test]
fn hash_keeps_rows_in_place_and_reads_only_stdin() {
    // A blank line in the middle of a list: the answers after it stay in their rows.
    let input = concat!(
        r#"{"field":"fn","value":"Ann"}"#,
        "\n\n",
        r#"{"field":"ln","value":"Lee"}"#,
        "\n",
    );
    let (out, _, ok) = run(&["hash"], input);
    assert!(ok);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["normalized"], "ann");
    assert_eq!(lines[1]["error"], "blank line");
    assert_eq!(lines[2]["normalized"], "lee");
    // A file name is refused, not ignored while the command waits on the terminal.
    let (out, err, ok) = run(&["hash", "customers.jsonl"], "");
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.contains("stdin"), "{err}");
}

#[test]
fn payload_prints_the_exact_capi_body_for_a_beacon_and_a_webhook() {
    let beacon = r#"{"event_name":"AddToCart","event_id":"e1","event_source_url":"https://s.example/p","custom_data":{"value":"3","currency":"eur","email":"x@y.z"},"user_data":{"em":"A@B.co"}}"#;
    let (out, err, ok) = run(
        &[
            "payload",
            "--user-agent",
            "UA/1",
            "--ip",
            "192.0.2.1",
            "--now-ms",
            "1795440000000",
        ],
        beacon,
    );
    assert!(ok, "{err}");
    let body: serde_json::Value = serde_json::from_str(&out).expect("json");
    let e = &body["data"][0];
    assert_eq!(e["event_id"], "e1");
    assert_eq!(e["event_time"], 1_795_440_000);
    assert_eq!(e["user_data"]["client_ip_address"], "192.0.2.1");
    assert_eq!(
        e["custom_data"],
        serde_json::json!({"value": 3.0, "currency": "EUR"})
    );
    assert_eq!(body["partner_agent"], "capi-edge");
    assert!(
        err.contains("dropped email: customer_data_not_allowed_in_custom_data"),
        "{err}"
    );
    // Data controls are off by default: the email never leaves, hashed or not.
    assert!(e["user_data"].get("em").is_none(), "{e}");
    assert!(err.contains("dropped em: data_controls_off"), "{err}");
    let (out, err, ok) = run(
        &[
            "payload",
            "--user-agent",
            "UA/1",
            "--customer-data",
            "hashed",
            "--now-ms",
            "1795440000000",
        ],
        beacon,
    );
    assert!(ok, "{err}");
    let body: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        body["data"][0]["user_data"]["em"],
        capi_core::hash::sha256_hex("a@b.co")
    );

    let order = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/webhooks/order.json"
    ))
    .expect("fixture");
    let (out, err, ok) = run(
        &["payload", "--webhook", "order", "--now-ms", "1795440000000"],
        &order,
    );
    assert!(ok, "{err}");
    let body: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(body["data"][0]["event_id"], "purchase:A-1001");

    let (_, err, ok) = run(&["payload"], beacon);
    assert!(!ok);
    assert!(err.contains("User-Agent"), "{err}");
}

#[test]
fn replay_quality_and_report_refuse_what_they_do_not_take() {
    for (args, needle) in [
        // A misspelled filter would replay every letter of the host's tenant.
        (
            &["replay", "--url", "https://shop.test/t", "--event_id", "e1"][..],
            "unknown argument \"--event_id\"",
        ),
        (
            &["replay", "--url", "https://shop.test/t", "--tennant", "b"][..],
            "unknown argument \"--tennant\"",
        ),
        (
            &["replay", "--url=https://shop.test/t?token=sekrit-value"][..],
            "unknown argument \"--url\"",
        ),
        (&["replay", "--token", "x"][..], "is not taken"),
        (&["replay", "--url"][..], "--url needs a value"),
        (
            &["quality", "--pixel", "1", "--jsn"][..],
            "unknown argument \"--jsn\"",
        ),
        (&["report", "--help"][..], "unknown argument \"--help\""),
    ] {
        let (out, err, ok) = run(args, "");
        assert!(!ok, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("sekrit-value"), "a value is never repeated");
    }
}

/// `send` that goes through a file without sending one of its rows exits 1, so a scheduled job
/// notices (a wrong column, sales too old for Meta); one row sent, or an empty export, exits 0.
/// Dry runs: nothing leaves the machine.
#[test]
fn send_exits_1_when_no_row_of_the_file_could_be_sent() {
    let dir = std::env::temp_dir().join(format!("capi-edge-send-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let head = "event_name,email,event_time,value,currency\n";
    let unusable = "Purchase,a@example.org,yesterday,5,EUR\nPurchase,b@example.org,,5,EUR\n";
    let one_good = format!("Purchase,c@example.org,{},5,EUR\n", now - 3600);
    for (name, rows, status) in [
        ("none", unusable.to_string(), Some(1)),
        ("one", format!("{unusable}{one_good}"), Some(0)),
        ("empty", String::new(), Some(0)),
    ] {
        let file = dir.join(format!("{name}.csv"));
        std::fs::write(&file, format!("{head}{rows}")).expect("write csv");
        let out = Command::new(env!("CARGO_BIN_EXE_capi-edge"))
            .args(["send", "--pixel", "123456789012345", "--dry-run"])
            .arg("--state")
            .arg(dir.join(format!("{name}.state")))
            .arg(&file)
            .output()
            .expect("run send");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), status, "{name}: {err}");
        assert_eq!(
            err.contains("no row of"),
            status == Some(1),
            "{name}: {err}"
        );
        assert!(
            !err.contains("example.org"),
            "a value is never repeated: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
