//! Text renderings of the registry's objects for people.

use std::fmt::Write as _;

use peyvand_registry::Directory;
use peyvand_registry::model::{AuditEntry, Certificate, Licence};
use peyvand_registry::time::format_millis;

pub fn licence(l: &Licence) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "provider        {}", l.provider_id);
    let _ = writeln!(out, "name            {}", l.name);
    let _ = writeln!(out, "domain          {}", l.domain);
    let _ = writeln!(out, "endpoint        {}", l.endpoint);
    let _ = writeln!(out, "contact         {}", l.contact);
    let _ = writeln!(out, "licence number  {}", l.licence_number);
    let _ = writeln!(out, "valid           {} to {}", format_millis(l.valid_from), format_millis(l.valid_until));
    match l.delisted_at {
        Some(at) => {
            let _ = writeln!(out, "status          {} (delisted {})", l.status.as_str(), format_millis(at));
        }
        None => {
            let _ = writeln!(out, "status          {} (directory: {})", l.status.as_str(), l.directory_status.as_str());
        }
    }
    let _ = writeln!(out, "signing keys    {}", list(&l.signing_keys));
    let _ = writeln!(out, "capabilities    {}", list(&l.capabilities));
    let _ = write!(out, "issued          {}, last changed {}", format_millis(l.issued_at), format_millis(l.updated_at));
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

/// One line per licence.
pub fn licence_table(licences: &[Licence]) -> String {
    if licences.is_empty() {
        return "no licences".to_owned();
    }
    licences
        .iter()
        .map(|l| {
            format!(
                "{}  {}  {}  {}  {}  until {}  {}",
                l.provider_id,
                l.directory_status.as_str(),
                l.licence_number,
                l.domain,
                l.endpoint,
                format_millis(l.valid_until),
                l.name
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line per entry: `#id time actor action provider: reason`.
pub fn audit(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return "no entries".to_owned();
    }
    entries
        .iter()
        .map(|e| {
            let mut line =
                format!("#{} {} {} {} {}", e.id, format_millis(e.at), e.actor, e.action.as_str(), e.provider_id);
            if let Some(reason) = &e.reason {
                let _ = write!(line, ": {reason}");
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn directory(d: &Directory, key_id: &str) -> String {
    let mut out = format!(
        "directory version {}, issued {}, expires {}, signature verified (key {key_id})",
        d.version,
        format_millis(d.issued_at),
        format_millis(d.expires_at)
    );
    if d.providers.is_empty() {
        out.push_str("\nno providers");
    }
    for p in &d.providers {
        let _ = write!(
            out,
            "\n{}  {}  {}  {}  keys: {}  capabilities: {}  certificate: {}",
            p.id,
            p.status.as_str(),
            p.domain,
            p.endpoint,
            p.signing_keys.len(),
            list(&p.capabilities),
            p.certificate_serial.as_deref().unwrap_or("none")
        );
    }
    if !d.revoked_certificates.is_empty() {
        let _ = write!(out, "\nrevoked certificates: {}", d.revoked_certificates.join(", "));
    }
    out
}

/// One line per certificate: serial, validity, and whether it is revoked.
pub fn certificates(certificates: &[Certificate]) -> String {
    if certificates.is_empty() {
        return "no certificates".to_owned();
    }
    certificates
        .iter()
        .map(|c| {
            let state = match c.revoked_at {
                Some(at) => format!("revoked {}", format_millis(at)),
                None => "valid".to_owned(),
            };
            format!(
                "{}  {}  {} to {}  {}",
                c.serial,
                c.provider_id,
                format_millis(c.not_before),
                format_millis(c.not_after),
                state
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
