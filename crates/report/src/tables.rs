//! Tables as polars DataFrames: `connections`, `races`, `backends`, `sequences`,
//! `stale_reuses`, and the per-service summary computed with polars' lazy group-by. Written
//! as CSV and Parquet. Nested fields are flattened with dotted names (`http.method`), lists
//! are joined with `;`, and every time column has an ISO-8601 twin (`syn_time_iso`).

use std::path::Path;

use polars::prelude::*;

use racetrace_core::domain::{epoch_seconds, iso8601, ms_between, Nanos};
use racetrace_core::model::{Analysis, Role};

fn join<T: ToString>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(";")
}

fn t(v: Option<Nanos>) -> Option<f64> {
    v.map(epoch_seconds)
}

fn iso(v: Option<Nanos>) -> Option<String> {
    v.map(iso8601)
}

macro_rules! frame {
    ($($name:expr => $v:expr),+ $(,)?) => {
        DataFrame::new_infer_height(vec![$(Series::new($name.into(), $v).into()),+])
    };
}

/// The connections table.
pub fn connections(a: &Analysis) -> PolarsResult<DataFrame> {
    let c = &a.connections;
    let http =
        |f: &dyn Fn(&racetrace_core::app::http::Request) -> Option<String>| -> Vec<Option<String>> {
            c.iter().map(|x| x.request().and_then(f)).collect()
        };
    let flag = |f: &dyn Fn(&racetrace_core::app::http::Request) -> bool| -> Vec<Option<bool>> {
        c.iter().map(|x| x.request().map(f)).collect()
    };
    frame![
        "id" => c.iter().map(|x| x.id as u64).collect::<Vec<_>>(),
        "first_record" => c.iter().map(|x| x.rec.first_record).collect::<Vec<_>>(),
        "last_record" => c.iter().map(|x| x.rec.last_record).collect::<Vec<_>>(),
        "family" => c.iter().map(|x| x.rec.family().as_str()).collect::<Vec<_>>(),
        "client" => c.iter().map(|x| a.hosts.get(x.host).map_or("", |h| &**h.label())).collect::<Vec<_>>(),
        "client_ip" => c.iter().map(|x| x.rec.client.ip.to_string()).collect::<Vec<_>>(),
        "client_port" => c.iter().map(|x| u32::from(x.rec.client.port)).collect::<Vec<_>>(),
        "server_ip" => c.iter().map(|x| x.rec.server.ip.to_string()).collect::<Vec<_>>(),
        "server_port" => c.iter().map(|x| u32::from(x.rec.server.port)).collect::<Vec<_>>(),
        "handshake_seen" => c.iter().map(|x| x.rec.handshake_seen).collect::<Vec<_>>(),
        "syn_time" => c.iter().map(|x| t(x.rec.syn_time.get())).collect::<Vec<_>>(),
        "syn_time_iso" => c.iter().map(|x| iso(x.rec.syn_time.get())).collect::<Vec<_>>(),
        "syn_count" => c.iter().map(|x| x.rec.syn_count).collect::<Vec<_>>(),
        "synack_time" => c.iter().map(|x| t(x.rec.synack_time.get())).collect::<Vec<_>>(),
        "established_time" => c.iter().map(|x| t(x.rec.established_time.get())).collect::<Vec<_>>(),
        "end_time" => c.iter().map(|x| t(x.rec.end().map(|e| e.0))).collect::<Vec<_>>(),
        "end_time_iso" => c.iter().map(|x| iso(x.rec.end().map(|e| e.0))).collect::<Vec<_>>(),
        "end_reason" => c.iter().map(|x| x.rec.end_reason()).collect::<Vec<_>>(),
        "bytes_client" => c.iter().map(|x| x.rec.bytes[0]).collect::<Vec<_>>(),
        "bytes_server" => c.iter().map(|x| x.rec.bytes[1]).collect::<Vec<_>>(),
        "stage" => c.iter().map(|x| x.rec.stage().as_str()).collect::<Vec<_>>(),
        "server_tsval" => c.iter().map(|x| x.rec.server_tsval).collect::<Vec<_>>(),
        "tls_sni" => c.iter().map(|x| x.tls().and_then(|t| t.sni.clone())).collect::<Vec<_>>(),
        "http.method" => http(&|r| Some(r.method.clone())),
        "http.target" => http(&|r| Some(r.target.clone())),
        "http.host" => http(&|r| r.host.clone()),
        "http.ws_upgrade" => flag(&|r| r.ws_upgrade),
        "http.authorization" => flag(&|r| r.authorization),
        "http.cookie" => flag(&|r| r.cookie),
        "http.status" => c.iter().map(|x| x.request().and(x.rec.app.as_ref().and_then(|a| a.status)).map(u32::from)).collect::<Vec<_>>(),
        "service" => c.iter().map(|x| &*x.service).collect::<Vec<_>>(),
        "race" => c.iter().map(|x| x.race.map(|r| r as u64)).collect::<Vec<_>>(),
        "role" => c.iter().map(|x| role(x.role)).collect::<Vec<_>>(),
        "backend" => c.iter().map(|x| x.backend.as_deref()).collect::<Vec<_>>(),
        "handshake_rtt_ms" => c.iter().map(|x| x.rec.handshake_legs().map(|(p, q)| ms_between(0, p + q))).collect::<Vec<_>>(),
        "history" => c.iter().map(|x| x.rec.history.as_str().to_string()).collect::<Vec<_>>(),
        "conn_state" => c.iter().map(|x| x.rec.conn_state()).collect::<Vec<_>>(),
    ]
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Winner => "winner",
        Role::AlsoRan => "also_ran",
        Role::Single => "single",
    }
}

/// The races table.
pub fn races(a: &Analysis) -> PolarsResult<DataFrame> {
    let r = &a.races;
    let fam = |id: Option<usize>| {
        id.and_then(|i| a.connections.get(i))
            .map(|c| c.rec.family().as_str())
    };
    frame![
        "id" => r.iter().map(|x| x.id as u64).collect::<Vec<_>>(),
        "service" => r.iter().map(|x| &*x.service).collect::<Vec<_>>(),
        "client" => r.iter().map(|x| &*x.client).collect::<Vec<_>>(),
        "start_time" => r.iter().map(|x| epoch_seconds(x.start_time)).collect::<Vec<_>>(),
        "start_time_iso" => r.iter().map(|x| iso8601(x.start_time)).collect::<Vec<_>>(),
        "attempts" => r.iter().map(|x| join(&x.attempts)).collect::<Vec<_>>(),
        "families" => r.iter().map(|x| join(x.families.iter().map(|f| f.as_str()))).collect::<Vec<_>>(),
        "first_family" => r.iter().map(|x| x.families.first().map(|f| f.as_str())).collect::<Vec<_>>(),
        "winner" => r.iter().map(|x| x.winner.map(|w| w as u64)).collect::<Vec<_>>(),
        "winner_family" => r.iter().map(|x| fam(x.winner)).collect::<Vec<_>>(),
        "also_rans" => r.iter().map(|x| join(&x.also_rans)).collect::<Vec<_>>(),
        "attempt_delays_ms" => r.iter().map(|x| join(&x.attempt_delays_ms)).collect::<Vec<_>>(),
        "first_attempt_delay_ms" => r.iter().map(|x| x.attempt_delays_ms.first().copied()).collect::<Vec<_>>(),
        "also_ran_cancel.stage" => r.iter().map(|x| join(x.also_ran_cancel.iter().map(|c| c.stage.as_str()))).collect::<Vec<_>>(),
        "also_ran_cancel.after_winner_ms" => r.iter().map(|x| join(x.also_ran_cancel.iter().map(|c| c.after_winner_ms.map(|m| m.to_string()).unwrap_or_default()))).collect::<Vec<_>>(),
        "also_ran_cancel.fate" => r.iter().map(|x| join(x.also_ran_cancel.iter().map(|c| c.fate.as_str()))).collect::<Vec<_>>(),
        "late_cancels" => r.iter().map(|x| x.late_cancels() as u32).collect::<Vec<_>>(),
        "n_attempts" => r.iter().map(|x| x.attempts.len() as u32).collect::<Vec<_>>(),
        "n_also_rans" => r.iter().map(|x| x.also_rans.len() as u32).collect::<Vec<_>>(),
        "duplicate_upgrade" => r.iter().map(|x| x.duplicate_upgrade).collect::<Vec<_>>(),
        "duplicate_upgrade_inferred" => r.iter().map(|x| x.duplicate_upgrade_inferred).collect::<Vec<_>>(),
        "duplicate_request" => r.iter().map(|x| x.duplicate_request.is_some()).collect::<Vec<_>>(),
        "cancel_rules_broken" => r.iter().map(|x| join(&x.cancel_rules_broken)).collect::<Vec<_>>(),
        "rfc8305" => r.iter().map(|x| join(&x.findings)).collect::<Vec<_>>(),
    ]
}

/// The backends table.
pub fn backends(a: &Analysis) -> PolarsResult<DataFrame> {
    let b = &a.backends;
    frame![
        "id" => b.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        "services" => b.iter().map(|x| join(&x.services)).collect::<Vec<_>>(),
        "server_ips" => b.iter().map(|x| join(&x.server_ips)).collect::<Vec<_>>(),
        "clock_hz" => b.iter().map(|x| x.clock_hz).collect::<Vec<_>>(),
        "connections" => b.iter().map(|x| join(&x.connections)).collect::<Vec<_>>(),
        "n_connections" => b.iter().map(|x| x.connections.len() as u32).collect::<Vec<_>>(),
        "confidence" => b.iter().map(|x| x.confidence).collect::<Vec<_>>(),
        "fitted_hz" => b.iter().map(|x| x.fitted_hz).collect::<Vec<_>>(),
        "skew_ppm" => b.iter().map(|x| x.skew_ppm).collect::<Vec<_>>(),
        "offset" => b.iter().map(|x| x.offset).collect::<Vec<_>>(),
        "rate_inferred" => b.iter().map(|x| x.rate_inferred).collect::<Vec<_>>(),
    ]
}

/// The sequences table.
pub fn sequences(a: &Analysis) -> PolarsResult<DataFrame> {
    let s = &a.sequences;
    frame![
        "client" => s.iter().map(|x| &*x.client).collect::<Vec<_>>(),
        "service" => s.iter().map(|x| &*x.service).collect::<Vec<_>>(),
        "connections" => s.iter().map(|x| join(&x.connections)).collect::<Vec<_>>(),
        "families" => s.iter().map(|x| join(x.families.iter().map(|f| f.as_str()))).collect::<Vec<_>>(),
        "backends" => s.iter().map(|x| join(x.backends.iter().map(|b| b.as_deref().unwrap_or_default()))).collect::<Vec<_>>(),
        "family_switches" => s.iter().map(|x| x.family_switches as u32).collect::<Vec<_>>(),
        "backend_switches" => s.iter().map(|x| x.backend_switches as u32).collect::<Vec<_>>(),
        "family_and_backend_switches" => s.iter().map(|x| x.family_and_backend_switches as u32).collect::<Vec<_>>(),
        "strip" => s.iter().map(|x| x.strip.clone()).collect::<Vec<_>>(),
    ]
}

/// The stale-reuse table.
pub fn stale_reuses(a: &Analysis) -> PolarsResult<DataFrame> {
    let s = &a.stale_reuses;
    frame![
        "connection" => s.iter().map(|x| x.connection as u64).collect::<Vec<_>>(),
        "client" => s.iter().map(|x| &*x.client).collect::<Vec<_>>(),
        "service" => s.iter().map(|x| &*x.service).collect::<Vec<_>>(),
        "request_time" => s.iter().map(|x| epoch_seconds(x.request_time)).collect::<Vec<_>>(),
        "request_time_iso" => s.iter().map(|x| iso8601(x.request_time)).collect::<Vec<_>>(),
        "request" => s.iter().map(|x| x.request.clone()).collect::<Vec<_>>(),
        "idle_ms" => s.iter().map(|x| x.idle_ms).collect::<Vec<_>>(),
        "peer_closed" => s.iter().map(|x| x.peer_closed).collect::<Vec<_>>(),
        "failure" => s.iter().map(|x| x.failure.as_str()).collect::<Vec<_>>(),
        "cause" => s.iter().map(|x| x.cause.as_str()).collect::<Vec<_>>(),
        "fin_to_request_ms" => s.iter().map(|x| x.fin_to_request_ms).collect::<Vec<_>>(),
        "time_to_failure_ms" => s.iter().map(|x| x.time_to_failure_ms).collect::<Vec<_>>(),
        "retransmissions" => s.iter().map(|x| x.retransmissions).collect::<Vec<_>>(),
        "retry" => s.iter().map(|x| x.retry.map(|r| r as u64)).collect::<Vec<_>>(),
        "retry_delay_ms" => s.iter().map(|x| x.retry_delay_ms).collect::<Vec<_>>(),
        "retry_same_request" => s.iter().map(|x| x.retry_same_request).collect::<Vec<_>>(),
    ]
}

/// Per service, computed with polars: races, attempts, also-rans and the also-ran rate
/// (also-rans over attempts whose SYN was seen), median and p95 first attempt delay, the
/// winners' IPv6 share, duplicate upgrades, late cancels, and backend switches.
pub fn service_summary(a: &Analysis) -> PolarsResult<DataFrame> {
    let races = races(a)?;
    let per_race = races.lazy().group_by([col_expr("service")]).agg([
        col_expr("id").count().alias("races"),
        col_expr("n_attempts").sum().alias("attempts"),
        col_expr("n_also_rans").sum().alias("also_rans"),
        col_expr("first_attempt_delay_ms")
            .median()
            .alias("median_attempt_delay_ms"),
        col_expr("first_attempt_delay_ms")
            .quantile(lit(0.95), QuantileMethod::Linear)
            .alias("p95_attempt_delay_ms"),
        col_expr("winner_family")
            .eq(lit("ipv6"))
            .cast(DataType::Float64)
            .mean()
            .alias("winner_ipv6_share"),
        col_expr("duplicate_upgrade")
            .cast(DataType::UInt32)
            .sum()
            .alias("duplicate_upgrades"),
        col_expr("late_cancels").sum().alias("late_cancels"),
    ]);
    let seqs = sequences(a)?.lazy().group_by([col_expr("service")]).agg([
        col_expr("family_switches").sum().alias("family_switches"),
        col_expr("backend_switches").sum().alias("backend_switches"),
    ]);
    let services = frame![
        "service" => a.services.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "server_port" => a.services.iter().map(|s| u32::from(s.server_port)).collect::<Vec<_>>(),
        "connections" => a.services.iter().map(|s| s.connections as u32).collect::<Vec<_>>(),
        "stale_reuses" => a.services.iter().map(|s| a.stale_reuses.iter().filter(|e| *e.service == *s.name).count() as u32).collect::<Vec<_>>(),
    ]?;
    services
        .lazy()
        .join(
            per_race,
            [col_expr("service")],
            [col_expr("service")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            seqs,
            [col_expr("service")],
            [col_expr("service")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(
            (col_expr("also_rans").cast(DataType::Float64)
                / col_expr("attempts").cast(DataType::Float64))
            .alias("also_ran_rate"),
        )
        .sort(["service"], SortMultipleOptions::default())
        .collect()
}

fn col_expr(name: &str) -> Expr {
    polars::prelude::col(name)
}

/// Write a frame as CSV.
pub fn write_csv(df: &mut DataFrame, path: &Path) -> PolarsResult<()> {
    let f = std::fs::File::create(path)?;
    CsvWriter::new(std::io::BufWriter::new(f))
        .include_header(true)
        .finish(df)
}

/// Write a frame as Parquet.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> PolarsResult<()> {
    let f = std::fs::File::create(path)?;
    ParquetWriter::new(f).finish(df).map(|_| ())
}

/// Per-capture totals for a batch's `summary.csv`.
pub fn capture_row(a: &Analysis) -> [(&'static str, String); 9] {
    let s = &a.summary;
    [
        ("capture", a.capture.file.clone()),
        ("connections", s.connections.to_string()),
        ("races", s.races.to_string()),
        ("also_rans", s.also_rans.to_string()),
        ("duplicate_upgrades", s.duplicate_upgrades.to_string()),
        ("backends", s.backends.to_string()),
        ("family_switches", s.family_switches.to_string()),
        ("stale_reuses", s.stale_reuses.to_string()),
        (
            "median_attempt_delay_ms",
            s.median_attempt_delay_ms
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ),
    ]
}
