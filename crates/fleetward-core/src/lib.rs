//! fleetward's domain logic, free of I/O.
//!
//! Everything that decides something (who may call what, which devices a
//! query selects, how versions order) lives here so that it can be tested
//! with plain values. Servers, stores and transports are thin adapters around
//! these types. This crate depends on no async runtime, database or HTTP
//! crate, and never reads the clock: time is always passed in.

pub mod detect;
pub mod device;
pub mod id;
pub mod query;
pub mod release;
pub mod role;
pub mod tag;
pub mod version;

pub use device::DeviceStatus;
pub use id::{DeviceId, IdError};
pub use release::{ReleaseAction, ReleaseState};
pub use role::{Permission, Role};
pub use tag::{Tag, TagError, TagKey, TagValue};
