//! Abuse reports: by local people, from peers, and of peers whose events were refused.

use peyvand_api::{ApiError, ErrorCode};
use peyvand_store::{ReportRecord, UserRecord};

use super::wire;
use super::{address, parse_address, provider_of};
use crate::{Service, Session, err, now_millis, store_error};

/// The longest report reason, in characters.
const MAX_REASON_CHARS: usize = 1000;

impl Service {
    /// `POST /v1/users/{user_id}/report`: reports a person for abuse. Kept here for the
    /// operator; a person on another messenger is also reported to their provider.
    pub async fn report(&self, session: Session, user_id: i64, reason: &str) -> Result<(), ApiError> {
        let reason = reason.trim();
        if reason.is_empty()
            || reason.chars().count() > MAX_REASON_CHARS
            || reason.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(err(ErrorCode::BadRequest, format!("a reason is 1 to {MAX_REASON_CHARS} characters of text")));
        }
        self.limit(format!("reports:{}", session.user_id), crate::DAY_MS, 20, "reports").await?;
        let me = self.live_user(session.user_id).await?;
        let target = self.live_user(user_id).await?;
        if target.id == me.id {
            return Err(err(ErrorCode::BadRequest, "you cannot report yourself"));
        }
        let local_address = |user: &UserRecord| match (&user.remote_address, &user.phone, self.federation.get()) {
            (Some(remote), _, _) => remote.clone(),
            (None, Some(phone), Some(f)) => address(phone, f.provider_id()),
            (None, Some(phone), None) => phone.clone(),
            (None, None, _) => format!("user:{}", user.id),
        };
        let record = ReportRecord {
            id: 0,
            reporter: local_address(&me),
            reported: local_address(&target),
            reason: reason.to_owned(),
            from_provider: None,
            created_at: now_millis(),
        };
        if let Some(remote) = &target.remote_address {
            let federation = self.federation()?;
            let report = wire::Report {
                reporter: record.reporter.clone(),
                reported: remote.clone(),
                reason: record.reason.clone(),
            };
            federation.report(provider_of(remote), &report).await?;
        }
        let id = self.store.add_report(record).await.map_err(store_error)?;
        tracing::warn!(report = id, reporter = me.id, reported = target.id, "abuse report");
        Ok(())
    }

    /// `POST /interconnect/v1/reports` from `peer`: one of its users reports one of ours.
    pub async fn accept_report(&self, peer: &str, report: wire::Report) -> Result<(), ApiError> {
        let (_, provider) = parse_address(&report.reporter)?;
        if provider != peer {
            return Err(err(ErrorCode::BadRequest, "a provider may report only for its own users"));
        }
        // Only about someone the reporter shares a chat with, with one answer for "no such
        // person" and "no chat with them": a peer cannot learn who has an account here by
        // reporting numbers, nor report people its users never met.
        let nobody = || err(ErrorCode::NotFound, "no one here shares a chat with the reporter at this address");
        let reported = self.local_by_address(&report.reported).await.map_err(|e| match e.code {
            ErrorCode::NotFound => nobody(),
            _ => e,
        })?;
        let reporter = self.store.remote_user_by_address(&report.reporter).await.map_err(store_error)?;
        let shared = match reporter {
            Some(reporter) => self.store.direct_chat(reported.id, reporter.id).await.map_err(store_error)?,
            None => None,
        };
        if shared.is_none() {
            return Err(nobody());
        }
        let reason = report.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(err(ErrorCode::BadRequest, format!("a reason is 1 to {MAX_REASON_CHARS} characters")));
        }
        let record = ReportRecord {
            id: 0,
            reporter: report.reporter,
            reported: report.reported,
            reason: reason.to_owned(),
            from_provider: Some(peer.to_owned()),
            created_at: now_millis(),
        };
        let id = self.store.add_report(record).await.map_err(store_error)?;
        tracing::warn!(report = id, %peer, reported = reported.id, "abuse report from another messenger");
        Ok(())
    }

    /// Keeps a report, for the operator, of a forged or conflicting event from `peer`, and
    /// counts it.
    pub(super) async fn report_peer(&self, peer: &str, refusal: &ApiError) {
        let Ok(federation) = self.federation() else { return };
        federation.refused_from(peer, refusal.code);
        let record = ReportRecord {
            id: 0,
            reporter: federation.provider_id().to_owned(),
            reported: peer.to_owned(),
            reason: format!("{}: {}", refusal.code, refusal.message),
            from_provider: None,
            created_at: now_millis(),
        };
        match self.store.add_report(record).await {
            Ok(id) => {
                tracing::warn!(report = id, %peer, code = %refusal.code, message = %refusal.message, "a peer's event was refused and reported")
            }
            Err(e) => {
                tracing::error!(error = %e, %peer, code = %refusal.code, "cannot keep the report of a refused event")
            }
        }
    }

    /// The newest abuse reports, for the operator.
    pub async fn reports(&self, limit: u32) -> Result<Vec<ReportRecord>, ApiError> {
        self.store.reports(limit.clamp(1, 1000)).await.map_err(store_error)
    }
}
