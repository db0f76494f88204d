//! Operator roles and what each may do.
//!
//! The matrix lives here, in one table, so that the API, the console and the
//! tests all ask the same question: `role.allows(permission)`.

use std::fmt;

/// What an operator token may be used for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Tokens and settings, and everything else.
    Admin,
    /// Releases and signing keys.
    ReleaseManager,
    /// Devices and rollouts.
    Operator,
    /// Reads everything, including the audit and security logs; changes nothing.
    Auditor,
    /// Reads the fleet, releases and rollouts; changes nothing.
    Viewer,
}

/// One thing a caller may want to do. Each API route needs exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    FleetRead,
    FleetWrite,
    ReleaseRead,
    ReleaseWrite,
    RolloutRead,
    RolloutWrite,
    AuditRead,
    TokenRead,
    TokenWrite,
    SettingsRead,
    SettingsWrite,
}

impl Permission {
    pub const ALL: [Permission; 11] = [
        Permission::FleetRead,
        Permission::FleetWrite,
        Permission::ReleaseRead,
        Permission::ReleaseWrite,
        Permission::RolloutRead,
        Permission::RolloutWrite,
        Permission::AuditRead,
        Permission::TokenRead,
        Permission::TokenWrite,
        Permission::SettingsRead,
        Permission::SettingsWrite,
    ];

    /// Reads change nothing; the audit log records only the others.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Permission::FleetRead
                | Permission::ReleaseRead
                | Permission::RolloutRead
                | Permission::AuditRead
                | Permission::TokenRead
                | Permission::SettingsRead
        )
    }
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::ReleaseManager,
        Role::Operator,
        Role::Auditor,
        Role::Viewer,
    ];

    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Auditor => permission.is_read(),
            Role::ReleaseManager => matches!(
                permission,
                P::FleetRead | P::ReleaseRead | P::RolloutRead | P::ReleaseWrite
            ),
            Role::Operator => matches!(
                permission,
                P::FleetRead | P::ReleaseRead | P::RolloutRead | P::FleetWrite | P::RolloutWrite
            ),
            Role::Viewer => matches!(permission, P::FleetRead | P::ReleaseRead | P::RolloutRead),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReleaseManager => "release-manager",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::parse(s).ok_or_else(|| {
            let names: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown role {s:?}; expected one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission as P;

    /// The whole matrix, row by row: the roles' documentation in executable form.
    #[test]
    fn matrix() {
        let table: &[(Role, &[Permission])] = &[
            (Role::Admin, &P::ALL),
            (
                Role::Auditor,
                &[
                    P::FleetRead,
                    P::ReleaseRead,
                    P::RolloutRead,
                    P::AuditRead,
                    P::TokenRead,
                    P::SettingsRead,
                ],
            ),
            (
                Role::ReleaseManager,
                &[
                    P::FleetRead,
                    P::ReleaseRead,
                    P::RolloutRead,
                    P::ReleaseWrite,
                ],
            ),
            (
                Role::Operator,
                &[
                    P::FleetRead,
                    P::ReleaseRead,
                    P::RolloutRead,
                    P::FleetWrite,
                    P::RolloutWrite,
                ],
            ),
            (
                Role::Viewer,
                &[P::FleetRead, P::ReleaseRead, P::RolloutRead],
            ),
        ];
        for (role, allowed) in table {
            for permission in P::ALL {
                assert_eq!(
                    role.allows(permission),
                    allowed.contains(&permission),
                    "{role} / {permission:?}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
