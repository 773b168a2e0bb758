//! The Conversions API endpoint of one pixel: batches posted with retries, and Meta's
//! rejections taken apart event by event.

use super::options::Options;
use super::state::SentLog;
use super::summary::Summary;
use super::Pending;
use capi_core::delivery::retry_delay_secs;
use capi_core::event::{events_url, request_body, ServerEvent};
use capi_core::meta_answer::{meta_answer, rejected_event_index, rejection_text, MetaAnswer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest wait between two tries of one request.
const MAX_RETRY_DELAY_SECS: u32 = 30;
/// Meta rejections that name no event, in a row, after which the request itself is taken to be
/// wrong (pixel, API version): the run stops instead of halving every batch down to single events.
const MAX_UNEXPLAINED_REJECTIONS: u32 = 3;

/// The Conversions API endpoint of one pixel, and how to talk to it.
pub(super) struct Graph {
    agent: ureq::Agent,
    url: String,
    token: String,
    app_secret: Option<String>,
    token_env: String,
    /// Single-event rejections without an event index, in a row.
    unexplained: u32,
    rng: u64,
}

impl Graph {
    pub(super) fn new(opts: &Options) -> Result<Graph, String> {
        let token = std::env::var(&opts.token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "set {} to the Conversions API access token (or use --dry-run)",
                    opts.token_env
                )
            })?;
        let app_secret = std::env::var(&opts.app_secret_env)
            .ok()
            .filter(|s| !s.trim().is_empty());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Graph {
            agent,
            url: events_url(&opts.url, &opts.api_version, &opts.pixel),
            token,
            app_secret,
            token_env: opts.token_env.clone(),
            unexplained: 0,
            rng: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1,
        })
    }

    /// Sends a batch until each event is acknowledged or rejected by Meta. A rejection names
    /// its event (dropped, the rest sent again) or the batch is halved to find it, as Meta
    /// rejects a whole request for one bad event.
    pub(super) fn deliver(
        &mut self,
        batch: Vec<Pending>,
        opts: &Options,
        log: &mut SentLog,
        summary: &mut Summary,
    ) -> Result<(), String> {
        let mut stack = vec![batch];
        while let Some(mut events) = stack.pop() {
            let answer = match self.post(&events, opts, summary) {
                Ok(answer) => answer,
                Err(e) => {
                    summary.unsent +=
                        (events.len() + stack.iter().map(Vec::len).sum::<usize>()) as u64;
                    return Err(e);
                }
            };
            match answer {
                (MetaAnswer::Accepted { .. }, _) => {
                    summary.sent += events.len() as u64;
                    self.unexplained = 0;
                    if let Err(e) = log.record(&events) {
                        summary.unsent += stack.iter().map(Vec::len).sum::<usize>() as u64;
                        return Err(format!(
                            "{e}: the last {} event(s) Meta acknowledged could not be recorded, \
                             so a later run of this file would send them again",
                            events.len()
                        ));
                    }
                }
                (MetaAnswer::Rejected { code, subcode, .. }, body) => {
                    let text = rejection_text(&body).unwrap_or_else(|| "no message".into());
                    let detail = match subcode {
                        Some(s) => format!("code {code}, subcode {s}"),
                        None => format!("code {code}"),
                    };
                    match rejected_event_index(&body).filter(|&i| i < events.len()) {
                        Some(i) => {
                            let bad = events.remove(i);
                            summary.reject(&text, &detail, bad.line);
                            self.unexplained = 0;
                            if !events.is_empty() {
                                stack.push(events);
                            }
                        }
                        None if events.len() == 1 => {
                            summary.reject(&text, &detail, events[0].line);
                            self.unexplained += 1;
                            if self.unexplained >= MAX_UNEXPLAINED_REJECTIONS {
                                summary.unsent += stack.iter().map(Vec::len).sum::<usize>() as u64;
                                return Err(format!(
                                    "Meta rejects every event without naming one ({text}; {detail}): \
                                     check --pixel, --api-version and the token's permissions"
                                ));
                            }
                        }
                        None => {
                            let second = events.split_off(events.len() / 2);
                            stack.push(second);
                            stack.push(events);
                        }
                    }
                }
                (MetaAnswer::Blocked { cause, code, .. }, _) => {
                    summary.unsent +=
                        (events.len() + stack.iter().map(Vec::len).sum::<usize>()) as u64;
                    return Err(format!(
                        "Meta refused the request (code {code}, {}): {} (the token comes from {})",
                        cause.as_str(),
                        cause.what_to_do(),
                        self.token_env
                    ));
                }
                // `post` returns only once the answer is not transient.
                (MetaAnswer::Transient { .. }, _) => stack.push(events),
            }
        }
        Ok(())
    }

    /// One request, tried up to `--max-attempts` times while the answer is transient (5xx,
    /// 429, a transient Graph code, a network error), with exponential backoff and jitter.
    fn post(
        &mut self,
        events: &[Pending],
        opts: &Options,
        summary: &mut Summary,
    ) -> Result<(MetaAnswer, String), String> {
        let data: Vec<ServerEvent> = events.iter().map(|p| p.event.clone()).collect();
        let body = request_body(
            &data,
            &self.token,
            self.app_secret.as_deref(),
            opts.test_event_code.as_deref(),
        );
        let mut last = String::new();
        for attempt in 0..opts.max_attempts {
            if attempt > 0 {
                let delay =
                    retry_delay_secs(attempt - 1, 1, MAX_RETRY_DELAY_SECS, false, self.jitter());
                std::thread::sleep(Duration::from_secs(u64::from(delay)));
                summary.retries += 1;
            }
            summary.requests += 1;
            let response = self
                .agent
                .post(&self.url)
                .header("content-type", "application/json")
                .send(body.as_str());
            let (status, text) = match response {
                Ok(mut r) => {
                    let status = r.status().as_u16();
                    (status, r.body_mut().read_to_string().unwrap_or_default())
                }
                Err(e) => {
                    // The transport's message names the host, never the token (it is in the body).
                    last = format!("could not reach {}: {e}", opts.url);
                    continue;
                }
            };
            match meta_answer(status, &text) {
                MetaAnswer::Transient { code, .. } => {
                    last = match code {
                        Some(c) => format!("Meta answered {status} (code {c})"),
                        None => format!("Meta answered {status}"),
                    };
                }
                answer => return Ok((answer, text)),
            }
        }
        Err(format!(
            "{last}, {} time(s); stopped — run the same command again to resume \
             (what Meta acknowledged is in the state file and will not be sent twice)",
            opts.max_attempts
        ))
    }

    /// xorshift64*: spreads retries; no need for a cryptographic source.
    fn jitter(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}
