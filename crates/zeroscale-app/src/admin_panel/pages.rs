//! The panel's pages as HTML. Every value that comes from users, config or engines goes
//! through [`esc`]; nothing is inlined as script or style (the CSP would refuse it).

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use zeroscale_core::domain::{Generation, User};
use zeroscale_core::queue::{JobStatus, QueueStats};
use zeroscale_models::router::ProviderHealth;

use super::{PanelAdmin, PanelState};
use crate::checks::Check;
use crate::traffic::Second;

/// `text` safe inside HTML text and double-quoted attributes.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a URL's path segment or query value.
pub(crate) fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

const NAV: [(&str, &str); 5] = [
    ("/admin", "Overview"),
    ("/admin/providers", "Providers"),
    ("/admin/jobs", "Jobs"),
    ("/admin/users", "Users"),
    ("/admin/generations", "Generations"),
];

/// A whole page: head, navigation (with the signed-in admin and logout), `body`.
fn page(title: &str, admin: Option<&PanelAdmin>, current: &str, body: &str) -> String {
    let mut nav = String::new();
    if let Some(admin) = admin {
        nav.push_str("<nav><span class=\"brand\">zeroscale admin</span>");
        for (href, label) in NAV {
            let class = if href == current {
                " class=\"current\""
            } else {
                ""
            };
            let _ = write!(nav, "<a href=\"{href}\"{class}>{label}</a>");
        }
        let _ = write!(
            nav,
            "<span class=\"who\">{}</span>",
            esc(&admin.user.username)
        );
        if !admin.csrf.is_empty() {
            let _ = write!(
                nav,
                "<form method=\"post\" action=\"/admin/logout\" class=\"inline\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\" id=\"logout\">Log out</button></form>",
                esc(&admin.csrf)
            );
        }
        nav.push_str("</nav>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · zeroscale admin</title>\
         <link rel=\"stylesheet\" href=\"/admin/assets/panel.css\">\
         <script src=\"/admin/assets/panel.js\" defer></script></head>\
         <body>{nav}<main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

/// A form posting to `action` with the CSRF token and one button.
fn button_form(
    admin: &PanelAdmin,
    action: &str,
    label: &str,
    id: &str,
    confirm: Option<&str>,
) -> String {
    let confirm = confirm
        .map(|text| format!(" data-confirm=\"{}\"", esc(text)))
        .unwrap_or_default();
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"{confirm}>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" id=\"{}\">{}</button></form>",
        esc(action),
        esc(&admin.csrf),
        esc(id),
        esc(label)
    )
}

/// A plain page with a title and a message, e.g. for an error.
pub(super) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<p class=\"message\">{}</p><p><a href=\"/admin\">Back to the panel</a></p>",
        esc(text)
    );
    super::html(status, page(title, None, "", &body))
}

/// 403 for a signed-in user who is not an admin.
pub(super) fn forbidden() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Admins only",
        "You are signed in, but this account is not an admin: the panel is for admins only.",
    )
}

pub(super) fn login(csrf: &str, problem: Option<&str>) -> String {
    let problem = problem
        .map(|p| format!("<p class=\"error\" id=\"problem\">{}</p>", esc(p)))
        .unwrap_or_default();
    let body = format!(
        "{problem}<form method=\"post\" action=\"/admin/login\" class=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Username <input name=\"username\" id=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" id=\"login\">Log in</button></form>",
        esc(csrf)
    );
    page("Log in", None, "", &body)
}

pub(super) fn overview(
    admin: &PanelAdmin,
    state: &PanelState,
    checks: &[Check],
    ready: bool,
    seconds: &[Second],
) -> String {
    let config = &state.api.config;
    let mut body = String::new();
    let _ = write!(
        body,
        "<section><h2>Backends</h2><table id=\"backends\"><tr><th>Concern</th><th>Backend</th></tr>\
         <tr><td>database</td><td>{}</td></tr><tr><td>storage</td><td>{}</td></tr>\
         <tr><td>queue</td><td>{}</td></tr><tr><td>workers</td><td>{}</td></tr></table>\
         <p>Version {}.</p></section>",
        esc(config.database.kind()),
        esc(config.storage.kind()),
        esc(config.queue.kind()),
        esc(serde_json::to_value(config.workers.mode)
            .ok()
            .as_ref()
            .and_then(|v| v.as_str())
            .unwrap_or("")),
        esc(env!("CARGO_PKG_VERSION")),
    );
    let _ = write!(
        body,
        "<section><h2>Readiness: <span id=\"readiness\" class=\"{}\">{}</span></h2>\
         <table id=\"checks\"><tr><th>Check</th><th>Backend</th><th>State</th><th>Detail</th></tr>",
        if ready { "ok" } else { "bad" },
        if ready { "ready" } else { "not ready" }
    );
    for c in checks {
        let word = if c.ok {
            "ok"
        } else if c.starting {
            "starting"
        } else if c.required {
            "unavailable"
        } else {
            "unavailable (not required)"
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            esc(&c.concern),
            esc(&c.backend),
            if c.ok { "ok" } else { "bad" },
            word,
            esc(&c.detail)
        );
    }
    body.push_str("</table></section>");
    body.push_str("<section><h2>Traffic, last minute</h2>");
    if state.metrics_on {
        body.push_str(&chart(seconds));
    } else {
        body.push_str("<p>Metrics are off (<code>metrics.enabled = false</code>): no traffic is recorded.</p>");
    }
    body.push_str("</section>");
    page("Overview", Some(admin), "/admin", &body)
}

/// The chart of requests/s and p95 latency as SVG, redrawn by panel.js every few seconds
/// from `/admin/traffic.json`.
fn chart(seconds: &[Second]) -> String {
    let (w, h) = (600.0, 160.0);
    let max_rps = seconds.iter().map(|s| s.requests).max().unwrap_or(0).max(1) as f64;
    let max_p95 = seconds
        .iter()
        .filter_map(|s| s.p95_ms)
        .fold(1.0f64, f64::max);
    let n = seconds.len().max(2) as f64 - 1.0;
    let points = |f: &dyn Fn(&Second) -> f64, max: f64| -> String {
        seconds
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:.1},{:.1}", i as f64 / n * w, h - f(s) / max * h))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rps = points(&|s| s.requests as f64, max_rps);
    let p95 = points(&|s| s.p95_ms.unwrap_or(0.0), max_p95);
    let last = seconds.last().copied();
    format!(
        "<div class=\"chart\"><svg id=\"traffic\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         role=\"img\" aria-label=\"requests per second and p95 latency\">\
         <polyline id=\"rps-line\" class=\"rps\" points=\"{rps}\"/>\
         <polyline id=\"p95-line\" class=\"p95\" points=\"{p95}\"/></svg>\
         <p><span class=\"key rps\">requests/s</span> now <b id=\"rps-now\">{}</b>, peak <b id=\"rps-max\">{}</b>; \
         <span class=\"key p95\">p95 latency</span> now <b id=\"p95-now\">{}</b>, peak <b id=\"p95-max\">{:.2} ms</b></p></div>",
        last.map_or(0, |s| s.requests),
        max_rps as u64,
        last.and_then(|s| s.p95_ms)
            .map_or("–".to_owned(), |ms| format!("{ms:.2} ms")),
        max_p95,
    )
}

pub(super) fn providers(
    admin: &PanelAdmin,
    health: &[(String, ProviderHealth)],
    checked: Option<&(String, bool)>,
) -> String {
    let now = Utc::now();
    let mut body = String::new();
    if let Some((name, ok)) = checked {
        let _ = write!(
            body,
            "<p class=\"{}\" id=\"checked\">Checked {}: {}.</p>",
            if *ok { "ok" } else { "error" },
            esc(name),
            if *ok {
                "it answers"
            } else {
                "it failed (see its last error)"
            }
        );
    }
    body.push_str(
        "<table id=\"providers\"><tr><th>Provider</th><th>State</th><th>Successes</th>\
         <th>Failures</th><th>Last error</th><th></th></tr>",
    );
    for (name, h) in health {
        let cooling = h.cooling_down_until.filter(|until| *until > now);
        let state = match cooling {
            Some(until) => format!("cooling down until {}", time(until)),
            None => "healthy".to_owned(),
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            if cooling.is_some() { "bad" } else { "ok" },
            esc(&state),
            h.successes,
            h.failures,
            esc(h.last_error.as_deref().unwrap_or("")),
            button_form(
                admin,
                &format!("/admin/providers/{}/check", url_encode(name)),
                "Check now",
                &format!("check-{name}"),
                None
            )
        );
    }
    body.push_str("</table>");
    page("Providers", Some(admin), "/admin/providers", &body)
}

pub(super) fn jobs(
    admin: &PanelAdmin,
    stats: &[(String, Result<QueueStats, String>)],
    selected: &str,
    dead: &Result<Vec<JobStatus>, String>,
    done: Option<&str>,
) -> String {
    let mut body = String::new();
    match done {
        Some("retried") => {
            body.push_str("<p class=\"ok\" id=\"done\">The job is queued again.</p>");
        }
        Some("purged") => {
            body.push_str("<p class=\"ok\" id=\"done\">Dead jobs purged.</p>");
        }
        _ => {}
    }
    body.push_str(
        "<table id=\"queues\"><tr><th>Queue</th><th>Queued</th><th>Scheduled</th><th>Running</th>\
         <th>Failed</th><th>Dead</th><th>Succeeded</th><th>Cancelled</th></tr>",
    );
    for (name, s) in stats {
        match s {
            Ok(s) => {
                let _ = write!(
                    body,
                    "<tr><td><a href=\"/admin/jobs?queue={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
                     <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    url_encode(name),
                    esc(name),
                    s.queued,
                    s.scheduled,
                    s.running,
                    s.failed,
                    s.dead,
                    s.succeeded,
                    s.cancelled
                );
            }
            Err(e) => {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td colspan=\"7\" class=\"bad\">{}</td></tr>",
                    esc(name),
                    esc(e)
                );
            }
        }
    }
    body.push_str("</table>");
    let _ = write!(body, "<h2>Dead jobs in {}</h2>", esc(selected));
    match dead {
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(e));
        }
        Ok(dead) if dead.is_empty() => body.push_str("<p id=\"no-dead\">None.</p>"),
        Ok(dead) => {
            body.push_str(&button_form(
                admin,
                &format!("/admin/queues/{}/purge", url_encode(selected)),
                "Purge all dead jobs",
                "purge",
                Some("Delete every dead job of this queue? This cannot be undone."),
            ));
            body.push_str(
                "<table id=\"dead\"><tr><th>Job</th><th>Task</th><th>Attempts</th><th>Last error</th>\
                 <th>Died</th><th></th></tr>",
            );
            for job in dead {
                let _ = write!(
                    body,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    job.id,
                    esc(&job.task),
                    job.attempts,
                    job.max_attempts,
                    esc(job.last_error.as_deref().unwrap_or("")),
                    job.finished_at.map(time).unwrap_or_default(),
                    button_form(
                        admin,
                        &format!(
                            "/admin/jobs/{}/retry?queue={}",
                            job.id,
                            url_encode(selected)
                        ),
                        "Retry",
                        &format!("retry-{}", job.id),
                        None
                    )
                );
            }
            body.push_str("</table>");
        }
    }
    page("Jobs", Some(admin), "/admin/jobs", &body)
}

pub(super) fn users(admin: &PanelAdmin, users: &[User]) -> String {
    let mut body = String::from(
        "<table id=\"users\"><tr><th>Username</th><th>Role</th><th>Active</th><th>Credits</th>\
         <th>Created</th><th>Last login</th></tr>",
    );
    for user in users {
        let _ = write!(
            body,
            "<tr><td class=\"username\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&user.username),
            esc(user.role.as_str()),
            if user.active { "yes" } else { "no" },
            user.credits,
            time(user.created_at),
            user.last_login_at.map(time).unwrap_or_default()
        );
    }
    body.push_str("</table>");
    if users.len() >= 200 {
        body.push_str(
            "<p>The first 200 users; <code>GET /v1/admin/users</code> pages through all.</p>",
        );
    }
    page("Users", Some(admin), "/admin/users", &body)
}

pub(super) fn generations(
    admin: &PanelAdmin,
    recent: &[Generation],
    names: &HashMap<String, String>,
) -> String {
    let mut body = String::new();
    if recent.is_empty() {
        body.push_str("<p id=\"no-generations\">No generations yet.</p>");
    } else {
        body.push_str(
            "<table id=\"generations\"><tr><th>When</th><th>User</th><th>Model</th><th>Provider</th>\
             <th>Status</th><th>Reserved</th><th>Cost</th><th>Prompt</th></tr>",
        );
        for g in recent {
            let prompt: String = g.prompt.chars().take(80).collect();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(g.created_at),
                esc(names
                    .get(&g.user_id)
                    .map_or(g.user_id.as_str(), String::as_str)),
                esc(&g.model),
                esc(g.provider.as_deref().unwrap_or("")),
                esc(g.status.as_str()),
                g.reserved_credits,
                g.actual_cost.map(|c| c.to_string()).unwrap_or_default(),
                esc(&prompt)
            );
        }
        body.push_str("</table>");
    }
    page("Generations", Some(admin), "/admin/generations", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(url_encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
