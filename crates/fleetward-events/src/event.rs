//! Typed security events.

use std::fmt;

use fleetward_core::DeviceId;

/// How much an event matters; ordered, so filters can say "high and above".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(raw: &str) -> Option<Severity> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// The RFC 5424 severity a syslog export uses.
    pub fn syslog(self) -> u8 {
        match self {
            Severity::Info => 6,
            Severity::Low => 5,
            Severity::Medium => 4,
            Severity::High => 3,
            Severity::Critical => 2,
        }
    }
}

macro_rules! event_kinds {
    ($($variant:ident => $name:literal, $severity:ident, $doc:literal;)*) => {
        /// What happened. The name is stable: exports and filters use it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $(#[doc = $doc] $variant,)*
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// The severity an event of this kind has unless a rule says more.
            pub fn default_severity(self) -> Severity {
                match self {
                    $(EventKind::$variant => Severity::$severity,)*
                }
            }
        }
    };
}

event_kinds! {
    DeviceEnrolled => "identity.enrolled", Info, "A device received its first certificate.";
    CertificateRenewed => "identity.renewed", Info, "A device renewed its certificate.";
    CertificateRevoked => "identity.revoked", Medium, "An operator or a rule revoked a certificate.";
    DeviceDecommissioned => "identity.decommissioned", Medium, "A device was retired for good.";
    HandshakeRefused => "identity.handshake_refused", Medium, "A TLS client was refused (no, unknown, expired or revoked certificate).";
    EnrolmentRefused => "identity.enrolment_refused", High, "An enrolment was refused (bad, used-up or expired token, bad CSR).";
    OperatorAction => "operator.action", Info, "An operator changed something (the audit log).";
    OperatorAuthFailed => "operator.auth_failed", Medium, "A request with a wrong, expired or revoked operator token.";
    ReleasePublished => "release.published", Info, "A release was published.";
    ReleaseRevoked => "release.revoked", High, "A release was revoked.";
    ReleaseBecameVulnerable => "release.vulnerable", High, "New advisories affect a published release.";
    RolloutPaused => "rollout.paused", Medium, "A rollout paused by itself.";
    ImpossibleTransition => "rollout.impossible_transition", High, "A device reported a state change no real update makes.";
    VerificationFailed => "device.verification_failed", High, "A device refused metadata or an image (hash, signature, expiry).";
    RollbackAttempt => "device.rollback_attempt", High, "A device was offered, or found, older software than it had.";
    UnexpectedReboot => "device.unexpected_reboot", Low, "A device rebooted outside an update.";
    UnapprovedFirmware => "device.unapproved_firmware", Critical, "A device reports a version no release has.";
    Downgrade => "device.downgrade", Critical, "A device reports a lower version than it had.";
    CloneSuspected => "device.clone_suspected", Critical, "One device identity seen from two addresses at once.";
    AuthFailureBurst => "network.auth_failure_burst", High, "Many handshake or token failures from one source.";
    OffSchedule => "device.off_schedule", Low, "A device polls far from its schedule.";
    TelemetryOutlier => "device.telemetry_outlier", Medium, "A device's telemetry left its own baseline.";
    DeviceQuarantined => "device.quarantined", High, "A device was quarantined.";
    EventsDropped => "device.events_dropped", Medium, "A device sent more events than its rate allows; the excess was counted.";
    DeviceError => "device.error", Low, "A device reported an error (download, install, poll) with its context.";
}

impl EventKind {
    pub fn parse(raw: &str) -> Option<EventKind> {
        Self::ALL.iter().copied().find(|k| k.as_str() == raw)
    }

    /// The kind of event an audited action is. Every audit record is also
    /// a security event; the ones a rule or a SIEM cares about get their own
    /// kind (and severity) instead of the generic [`EventKind::OperatorAction`].
    pub fn for_audit_action(action: &str) -> EventKind {
        match action {
            "device.enroll" => EventKind::DeviceEnrolled,
            "device.renew" => EventKind::CertificateRenewed,
            "device.revoke" => EventKind::CertificateRevoked,
            "device.decommission" => EventKind::DeviceDecommissioned,
            "device.quarantine" => EventKind::DeviceQuarantined,
            "device.tls_refused" => EventKind::HandshakeRefused,
            "device.enroll_refused" | "device.renew_refused" => EventKind::EnrolmentRefused,
            "operator.auth_failed" => EventKind::OperatorAuthFailed,
            "release.publish" => EventKind::ReleasePublished,
            "release.revoke" => EventKind::ReleaseRevoked,
            "rollout.auto_pause" => EventKind::RolloutPaused,
            "execution.impossible_transition" => EventKind::ImpossibleTransition,
            _ => EventKind::OperatorAction,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that cannot be logged as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("{field} is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} contains a control character")]
    ControlCharacter { field: &'static str },
}

/// One security event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub severity: Severity,
    pub device: Option<DeviceId>,
    /// The network address it came from, as the server saw it.
    pub source: Option<String>,
    /// When the server logged it, Unix milliseconds.
    pub server_time_ms: i64,
    /// When the device says it happened (device clocks lie; both are kept).
    pub device_time_ms: Option<i64>,
    /// One line for people.
    pub message: String,
    /// Kind-specific details, JSON text.
    pub detail: String,
}

impl Event {
    pub const MAX_MESSAGE: usize = 1024;
    pub const MAX_DETAIL: usize = 16 * 1024;
    pub const MAX_SOURCE: usize = 128;

    /// Checks the bounds a log entry must keep; device-supplied text is
    /// hostile until checked.
    pub fn check(&self) -> Result<(), EventError> {
        bounded("message", &self.message, Self::MAX_MESSAGE)?;
        bounded("detail", &self.detail, Self::MAX_DETAIL)?;
        if let Some(source) = &self.source {
            bounded("source", source, Self::MAX_SOURCE)?;
        }
        // A newline in a message would forge lines in syslog and JSON Lines readers.
        if self.message.chars().any(char::is_control) {
            return Err(EventError::ControlCharacter { field: "message" });
        }
        Ok(())
    }
}

fn bounded(field: &'static str, text: &str, max: usize) -> Result<(), EventError> {
    if text.len() > max {
        return Err(EventError::TooLong { field, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn audited_actions_get_their_own_kind() {
        let check = |action: &str, expected: EventKind| {
            assert_eq!(EventKind::for_audit_action(action), expected, "{action}")
        };
        check("device.tls_refused", EventKind::HandshakeRefused);
        check("device.enroll_refused", EventKind::EnrolmentRefused);
        check("device.renew_refused", EventKind::EnrolmentRefused);
        check("operator.auth_failed", EventKind::OperatorAuthFailed);
        check("device.enroll", EventKind::DeviceEnrolled);
        check("device.quarantine", EventKind::DeviceQuarantined);
        check("release.revoke", EventKind::ReleaseRevoked);
        check("device.update", EventKind::OperatorAction);
        check("token.create", EventKind::OperatorAction);
        check("", EventKind::OperatorAction);
    }
}
