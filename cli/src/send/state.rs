//! The state file of `capi-edge send`: what Meta acknowledged, so nothing is sent twice.

use super::Pending;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The state file: one JSON line per event Meta acknowledged, `{"event_id","pixel"[,
/// "test_event_code"]}`, appended and synced after each acknowledged batch. Held with an
/// exclusive lock while a run writes it, so two runs never send the same file at once.
/// How every record of a state file starts (`event_id` is its first key, sorted or not).
const RECORD_START: &str = "{\"event_id\":";

fn not_a_state_file(name: &std::path::Display<'_>, line: usize) -> String {
    format!(
        "state file {name}, line {line}: not a capi-edge send record (is --state another file?)"
    )
}

pub(super) struct SentLog {
    pub(super) path: PathBuf,
    file: Option<File>,
    pixel: String,
    test_event_code: Option<String>,
    sent: HashSet<String>,
}

impl SentLog {
    /// Reads the state file (a dry run only reads it, if it exists). A last line cut by a killed
    /// run is dropped: its batch was not wholly recorded, and is sent again.
    pub(super) fn open(
        path: &Path,
        pixel: &str,
        test_event_code: Option<&str>,
        write: bool,
    ) -> Result<SentLog, String> {
        let name = path.display();
        let mut file = if write {
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| format!("state file {name}: {e}"))?;
            f.try_lock().map_err(|_| {
                format!("state file {name} is in use by another capi-edge send of this file")
            })?;
            Some(f)
        } else {
            match File::open(path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("state file {name}: {e}")),
            }
        };
        let mut text = String::new();
        if let Some(f) = file.as_mut() {
            f.read_to_string(&mut text)
                .map_err(|e| format!("state file {name}: {e}"))?;
        }
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        let mut sent = HashSet::new();
        for (i, line) in text[..complete].lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let (Some(id), Some(p)) = (
                entry.get("event_id").and_then(Value::as_str),
                entry.get("pixel").and_then(Value::as_str),
            ) else {
                return Err(not_a_state_file(&name, i + 1));
            };
            let test = entry.get("test_event_code").and_then(Value::as_str);
            if p == pixel && test == test_event_code {
                sent.insert(id.to_string());
            }
        }
        if complete < text.len() {
            // Only the start of a record of ours is cut away; anything else is another file.
            let tail = &text[complete..];
            if !(tail.starts_with(RECORD_START) || RECORD_START.starts_with(tail)) {
                return Err(not_a_state_file(
                    &name,
                    text[..complete].lines().count() + 1,
                ));
            }
            if let (true, Some(f)) = (write, file.as_ref()) {
                f.set_len(complete as u64)
                    .map_err(|e| format!("state file {name}: {e}"))?;
            }
        }
        Ok(SentLog {
            path: path.to_path_buf(),
            file: if write { file } else { None },
            pixel: pixel.to_string(),
            test_event_code: test_event_code.map(str::to_string),
            sent,
        })
    }

    pub(super) fn contains(&self, event_id: &str) -> bool {
        self.sent.contains(event_id)
    }

    /// Records a batch Meta acknowledged: one write, then synced before anything else is sent.
    pub(super) fn record(&mut self, events: &[Pending]) -> Result<(), String> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut lines = String::with_capacity(events.len() * 96);
        for p in events {
            // `event_id` first: a line cut short still starts with RECORD_START.
            let mut entry = json!({"event_id": p.event.event_id, "pixel": self.pixel});
            if let Some(code) = &self.test_event_code {
                entry["test_event_code"] = json!(code);
            }
            lines.push_str(&entry.to_string());
            lines.push('\n');
        }
        file.write_all(lines.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("state file {}: {e}", self.path.display()))?;
        self.sent
            .extend(events.iter().map(|p| p.event.event_id.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capi_core::event::{ServerEvent, UserData};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("capi-send-state-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    fn pending(id: &str) -> Pending {
        Pending {
            line: 2,
            event: ServerEvent {
                event_name: "Purchase".into(),
                event_time: 1,
                event_id: id.into(),
                action_source: "physical_store".into(),
                event_source_url: None,
                referrer_url: None,
                user_data: UserData::default(),
                custom_data: Default::default(),
                data_processing_options: None,
                data_processing_options_country: None,
                data_processing_options_state: None,
            },
        }
    }

    #[test]
    fn what_was_recorded_is_found_again_per_pixel_and_test_code() {
        let path = temp("a.capi-state");
        let mut log = SentLog::open(&path, "1", None, true).expect("new state");
        log.record(&[pending("e1"), pending("e2")]).expect("record");
        assert!(
            SentLog::open(&path, "1", None, true).is_err(),
            "held by the first run"
        );
        drop(log);
        let again = SentLog::open(&path, "1", None, true).expect("reopen");
        assert!(again.contains("e1") && again.contains("e2") && !again.contains("e3"));
        drop(again);
        assert!(!SentLog::open(&path, "2", None, false)
            .expect("other pixel")
            .contains("e1"));
        assert!(!SentLog::open(&path, "1", Some("TEST1234"), false)
            .expect("test events")
            .contains("e1"));
    }

    #[test]
    fn a_record_cut_short_is_dropped_and_another_file_refused() {
        let path = temp("b.capi-state");
        let mut log = SentLog::open(&path, "1", None, true).expect("new state");
        log.record(&[pending("e1")]).expect("record");
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).expect("append");
        f.write_all(b"{\"event_id\":\"e2\",\"pix").expect("torn");
        drop(f);
        let log = SentLog::open(&path, "1", None, true).expect("torn tail");
        assert!(log.contains("e1") && !log.contains("e2"));
        drop(log);
        assert!(std::fs::read_to_string(&path)
            .unwrap_or_default()
            .ends_with("}\n"));

        let other = temp("sales.csv");
        std::fs::write(&other, "email,event_time\njane@example.com,1").expect("write");
        let err = SentLog::open(&other, "1", None, true)
            .err()
            .unwrap_or_default();
        assert!(err.contains("not a capi-edge send record") && !err.contains("jane"));
        assert_eq!(
            std::fs::read_to_string(&other).unwrap_or_default(),
            "email,event_time\njane@example.com,1",
            "left as it was"
        );
    }
}
