//! Device lifecycle states.

use std::fmt;

/// Where a device stands in its life. Only `active` devices receive updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Registered or enrolled, waiting for an operator's approval.
    Pending,
    /// In service.
    Active,
    /// Isolated after a security finding: no rollouts reach it.
    Quarantined,
    /// Retired for good; its identity is never accepted again.
    Decommissioned,
}

impl DeviceStatus {
    pub const ALL: [DeviceStatus; 4] = [
        DeviceStatus::Pending,
        DeviceStatus::Active,
        DeviceStatus::Quarantined,
        DeviceStatus::Decommissioned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Active => "active",
            DeviceStatus::Quarantined => "quarantined",
            DeviceStatus::Decommissioned => "decommissioned",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for status in DeviceStatus::ALL {
            assert_eq!(DeviceStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeviceStatus::parse("Active"), None);
        assert_eq!(DeviceStatus::parse(""), None);
    }
}
